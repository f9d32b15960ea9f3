"""What should run where, and what to do about each release: pure decisions.

`plan_stack` turns a Stack spec (plus the add-on charts the controller configuration
prepends, and the values read from ConfigMaps/Secrets) into a `StackPlan`: the checked
chart graph, its waves, and for any cluster the `DesiredRelease`s with fully merged
values. `decide` compares one desired release with what helm has (`ObservedRelease`)
and returns the action. The rollout (`herd.rollout`) and `herd plan` act on these;
nothing here performs I/O, so every rule is covered by table tests.

Values merge order (later wins): chart defaults (helm) < `values.inline` <
`values.envs[spec.env]` < each `values.from` source in order < per-cluster values an
add-on needs (e.g. the observability agent's cluster name). Maps merge key by key;
lists and scalars are replaced, as helm itself does with several `-f` files.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from herd.api.v1 import ChartSpec, StackSpec, ValuesSource
from herd.errors import Problem, SpecError
from herd.graph import ChartGraph

# Labels Herd puts on the helm releases it manages (helm --labels; stored on the
# release's storage Secret, so one metadata list per cluster shows all of them).
LABEL_STACK = "herd.suse.com/stack"
LABEL_CHART = "herd.suse.com/chart"
LABEL_WAVE = "herd.suse.com/wave"
LABEL_CONFIG = "herd.suse.com/config"
LABEL_VERSION = "herd.suse.com/chart-version"

# Add-on releases (NeuVector, the observability agent) serve every Stack on a cluster:
# they carry this owner instead of a Stack's, so two Stacks with `security: enabled`
# share one NeuVector, and removing a Stack never removes them.
SHARED_OWNER = "herd.shared-addons"

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

Values = dict[str, Any]
SourceKey = tuple[str, str, str]  # (kind, name, key) of a values.from entry
ClusterValues = Callable[[str, "ChartSpec"], Values]


def source_key(source: ValuesSource) -> SourceKey:
    return (source.kind, source.name, source.key)


def owner_label(namespace: str, name: str) -> str:
    """The `herd.suse.com/stack` label value naming a Stack (a valid label value)."""
    value = f"{namespace}.{name}"
    if _LABEL_VALUE.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def label_value(text: str) -> str:
    """`text` made a valid label value (SemVer build metadata `+` becomes `_`)."""
    value = re.sub(r"[^-A-Za-z0-9_.]", "_", text)[:63].strip("-_.")
    return value or "none"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Values:
    """Maps merge key by key; anything else in `override` replaces what `base` had."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values that differ; never the values themselves."""
    changed = []
    for key in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{key}"
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changed += changed_keys(before, after, f"{path}.")
        elif before != after or (key in old) != (key in new):
            changed.append(path)
    return changed


@dataclass(frozen=True)
class ReleaseKey:
    """A release's identity: one (cluster, namespace, release name) is one helm release."""

    cluster: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DesiredRelease:
    key: ReleaseKey
    chart: ChartSpec
    wave: int
    values: Values = field(compare=False)
    config: str  # digest of everything that, changed, needs a helm upgrade
    owner: str | None = None  # SHARED_OWNER for add-ons; None: the Stack's own label

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_CHART: self.chart.name,
            LABEL_WAVE: str(self.wave),
            LABEL_CONFIG: self.config,
            LABEL_VERSION: label_value(self.chart.version),
        }


@dataclass(frozen=True)
class ObservedRelease:
    """What helm's storage says about a release (latest revision), labels included."""

    namespace: str
    name: str
    status: str  # deployed, failed, pending-install, pending-upgrade, ...
    revision: int
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def owner(self) -> str | None:
        return self.labels.get(LABEL_STACK)

    @property
    def chart(self) -> str:
        return self.labels.get(LABEL_CHART, self.name)

    @property
    def chart_version(self) -> str | None:
        return self.labels.get(LABEL_VERSION)

    @property
    def wave(self) -> int:
        try:
            return int(self.labels.get(LABEL_WAVE, "0"))
        except ValueError:
            return 0


class Action(enum.StrEnum):
    INSTALL = "install"
    UPGRADE = "upgrade"
    NOTHING = "nothing"
    UNINSTALL = "uninstall"
    RECOVER = "recover"  # a pending-* release must be unstuck before anything else
    CONFLICT = "conflict"  # the release exists but another tool or Stack owns it


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback", "uninstalling"})


def decide(
    desired: DesiredRelease | None, observed: ObservedRelease | None, owner: str
) -> Decision:
    """The one thing to do next about a release. `owner` is this Stack's owner label."""
    if desired is not None and desired.owner is not None:
        owner = desired.owner
    if observed is not None and observed.owner != owner:
        if desired is None:
            return Decision(Action.NOTHING, "not managed by this Stack")
        managed_by = f"Stack {observed.owner}" if observed.owner else "another tool"
        return Decision(
            Action.CONFLICT,
            f"release {observed.namespace}/{observed.name} exists and is managed by "
            f"{managed_by}; Herd will not take it over",
        )
    if observed is None:
        if desired is None:
            return Decision(Action.NOTHING, "absent, as desired")
        return Decision(Action.INSTALL, "not installed")
    if observed.status in PENDING:
        return Decision(Action.RECOVER, f"stuck in {observed.status}")
    if desired is None:
        return Decision(Action.UNINSTALL, "no longer in the Stack or its targets")
    if observed.status == "uninstalled":
        return Decision(Action.INSTALL, "uninstalled (history kept)")
    if observed.status != "deployed":
        return Decision(Action.UPGRADE, f"last operation left it {observed.status}")
    if observed.labels.get(LABEL_CONFIG) != desired.config:
        old, new = observed.chart_version, label_value(desired.chart.version)
        if old and old != new:
            return Decision(Action.UPGRADE, f"chart version {old} -> {new}")
        return Decision(Action.UPGRADE, "values or chart source changed")
    return Decision(Action.NOTHING, "up to date")


@dataclass(frozen=True)
class StackPlan:
    """A Stack's charts (add-ons first) as a checked graph, ready to place on clusters."""

    spec: StackSpec
    charts: tuple[ChartSpec, ...]
    graph: ChartGraph
    waves: tuple[tuple[str, ...], ...]
    from_values: Mapping[SourceKey, Values]
    cluster_values: ClusterValues | None = None
    shared: frozenset[str] = frozenset()  # names of the add-on charts

    @property
    def wave_of(self) -> dict[str, int]:
        return {name: i for i, wave in enumerate(self.waves) for name in wave}

    def base_values(self, chart: ChartSpec) -> Values:
        """Merged values that are the same in every cluster."""
        values = deep_merge({}, chart.values.inline)
        values = deep_merge(values, chart.values.envs.get(self.spec.env, {}))
        for source in chart.values.from_:
            values = deep_merge(values, self.from_values.get(source_key(source), {}))
        return values

    def releases_for(self, cluster: str) -> list[DesiredRelease]:
        """Every release this Stack wants in `cluster`, in wave order."""
        wave_of = self.wave_of
        releases = []
        for name in (n for wave in self.waves for n in wave):
            chart = self.graph.charts[name]
            values = self.base_values(chart)
            if self.cluster_values is not None:
                values = deep_merge(values, self.cluster_values(cluster, chart))
            releases.append(
                DesiredRelease(
                    key=ReleaseKey(cluster, chart.namespace, chart.release),
                    chart=chart,
                    wave=wave_of[name],
                    values=values,
                    config=config_digest(chart, values),
                    owner=SHARED_OWNER if name in self.shared else None,
                )
            )
        return releases


def config_digest(chart: ChartSpec, values: Mapping[str, Any]) -> str:
    """A short digest of repo, chart, version, flags and values: equal means no upgrade."""
    material = json.dumps(
        {
            "repo": chart.repo,
            "chart": chart.chart_name,
            "version": chart.version,
            "atomic": chart.atomic,
            "values": values,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def plan_stack(
    spec: StackSpec,
    *,
    addons: Sequence[ChartSpec] = (),
    from_values: Mapping[SourceKey, Values] | None = None,
    cluster_values: ClusterValues | None = None,
) -> StackPlan:
    """Prepend `addons` (every user chart depends on them), check the graph, cut waves.

    Raises `SpecError` for any problem, before anything touches a cluster.
    """
    addon_releases = {(a.namespace, a.release): a for a in addons}
    problems = [
        Problem(
            f"spec.charts[{i}].releaseName",
            f"release {c.namespace}/{c.release} is reserved for the {clash.name} add-on",
        )
        for i, c in enumerate(spec.charts)
        if (clash := addon_releases.get((c.namespace, c.release))) is not None
    ]
    problems += [
        Problem(f"spec.charts[{i}].name", f"chart name {c.name!r} is reserved for an add-on")
        for i, c in enumerate(spec.charts)
        if c.name in {a.name for a in addons}
    ]
    problems += _missing_sources(spec, from_values)
    if problems:
        raise SpecError(problems)
    addon_names = [a.name for a in addons]
    user_charts = [
        c.model_copy(update={"depends_on": [*addon_names, *c.depends_on]}) for c in spec.charts
    ]
    graph = ChartGraph([*addons, *user_charts])
    return StackPlan(
        spec=spec,
        charts=tuple(graph.charts.values()),
        graph=graph,
        waves=tuple(tuple(w) for w in graph.waves()),
        from_values=dict(from_values or {}),
        cluster_values=cluster_values,
        shared=frozenset(addon_names),
    )


def _missing_sources(
    spec: StackSpec, from_values: Mapping[SourceKey, Values] | None
) -> list[Problem]:
    """`values.from` entries that were not resolved and are not optional."""
    if from_values is None:
        return []
    return [
        Problem(
            f"spec.charts[{i}].values.from[{k}]",
            f"{s.kind} {s.name!r} has no key {s.key!r} (set optional: true to allow that)",
        )
        for i, c in enumerate(spec.charts)
        for k, s in enumerate(c.values.from_)
        if source_key(s) not in from_values and not s.optional
    ]
