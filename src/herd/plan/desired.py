"""What should run where: pure decisions.

`plan_stack` turns a Stack spec (plus the add-on charts the controller configuration
prepends, and the values read from ConfigMaps/Secrets) into a `StackPlan`: the checked
chart graph, its waves, and for any cluster the `DesiredRelease`s with fully merged
values. What to do about each release is the state table, `herd.plan.decide`. The rollout
(`herd.rollout`) and `herd plan` act on these; nothing here performs I/O, so every rule
is covered by table tests.

Values merge order (later wins): chart defaults (helm) < `values.inline` <
`values.envs[spec.env]` < each `values.clusters` entry selecting the cluster, in list order
< each `values.from` source in order < per-cluster values an add-on needs (e.g. the
observability agent's cluster name). Maps merge key by key; lists and scalars are
replaced, as helm itself does with several `-f` files. With `values.templated`, the
strings of inline, envs and clusters are rendered with the cluster's facts before the
merge (`herd.plan.values`); `from` values never are. The config digest is taken over
the rendered values, per cluster. A cluster lacking a fact gets a release with a
`problem` (action INVALID): only its rows fail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from herd.api.charts import ChartSpec, ValuesSource
from herd.api.v1 import StackSpec
from herd.errors import Problem, SpecError
from herd.plan.chart_sources import ChartSource
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.graph import ChartGraph
from herd.plan.releases import (
    MANAGERS,
    SHARED_OWNER,
    DesiredRelease,
    ObservedRelease,
    ReleaseKey,
    Values,
    label_value,
    owner_label,
)
from herd.plan.values import ClusterValuesError, rendered_layers
from herd.plan.values import spec_problems as template_problems

__all__ = [
    "MANAGERS",
    "SHARED_OWNER",
    "DesiredRelease",
    "ObservedRelease",
    "ReleaseKey",
    "StackPlan",
    "Values",
    "blocked_by",
    "changed_keys",
    "config_digest",
    "deep_merge",
    "label_value",
    "owner_label",
    "plan_stack",
]

SourceKey = tuple[str, str, str]  # (kind, name, key) of a values.from entry
ClusterValues = Callable[[str, "ChartSpec"], Values]


def source_key(source: ValuesSource) -> SourceKey:
    return (source.kind, source.name, source.key)


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
class StackPlan:
    """A Stack's charts (add-ons first) as a checked graph, ready to place on clusters."""

    spec: StackSpec
    charts: tuple[ChartSpec, ...]
    graph: ChartGraph
    waves: tuple[tuple[str, ...], ...]
    from_values: Mapping[SourceKey, Values]
    cluster_values: ClusterValues | None = None
    shared: frozenset[str] = frozenset()  # names of the add-on charts
    clusters: Mapping[str, Cluster] = field(default_factory=dict)  # facts, by cluster id
    sources: Mapping[str, ChartSource] = field(default_factory=dict)  # private chart sources

    @property
    def wave_of(self) -> dict[str, int]:
        return {name: i for i, wave in enumerate(self.waves) for name in wave}

    def values_for(self, cluster: str, chart: ChartSpec) -> tuple[Values, str]:
        """The merged values of `chart` on `cluster` (module docstring: the order), and
        the problem ("" when none) that keeps them from being rendered there."""
        facts = self.clusters.get(cluster) or _unknown_cluster(cluster)
        values: Values = {}
        problem = ""
        try:
            for layer in rendered_layers(chart, self.spec.env, facts):
                values = deep_merge(values, layer)
        except ClusterValuesError as error:
            problem = str(error)
        for source in chart.values.from_:
            values = deep_merge(values, self.from_values.get(source_key(source), {}))
        if self.cluster_values is not None:
            values = deep_merge(values, self.cluster_values(cluster, chart))
        return values, problem

    def releases_for(self, cluster: str) -> list[DesiredRelease]:
        """Every release this Stack wants in `cluster`, in wave order."""
        wave_of = self.wave_of
        releases = []
        for name in (n for wave in self.waves for n in wave):
            chart = self.graph.charts[name]
            values, problem = self.values_for(cluster, chart)
            releases.append(
                DesiredRelease(
                    key=ReleaseKey(cluster, chart.namespace, chart.release),
                    chart=chart,
                    wave=wave_of[name],
                    values=values,
                    config=config_digest(chart, values),
                    owner=SHARED_OWNER if name in self.shared else None,
                    problem=problem,
                    source=self.sources.get(name),
                )
            )
        return releases


def _unknown_cluster(cluster: str) -> Cluster:
    """Facts of a cluster the plan was not told about: its id only."""
    return Cluster(cluster, cluster, {}, True, "file", KubeconfigRef())


def blocked_by(plan: StackPlan, chart: str, states: Mapping[str, str]) -> str:
    """Why `chart` cannot start: its first dependency whose state (by chart name, e.g.
    "Deployed", "Failed") is not Deployed; "" when all are. The scheduler asks once every
    dependency has finished, so a chart never waits for more than its own dependencies."""
    for dependency in plan.graph.dependencies(chart):
        state = states.get(dependency, "Pending")
        if state != "Deployed":
            return f"dependency {dependency} {state.lower()}"
    return ""


def config_digest(chart: ChartSpec, values: Mapping[str, Any]) -> str:
    """A short digest of repo, chart, version, flags and values: equal means no upgrade."""
    material = json.dumps(
        {
            "repo": chart.repo,
            "chart": chart.chart_name,
            "version": chart.version,
            "atomic": chart.atomic,
            "values": values,
            # Only when set: the default keeps every existing release's digest (no upgrade).
            **({"crds": chart.crds} if chart.crds != "Create" else {}),
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
    clusters: Sequence[Cluster] = (),
    sources: Mapping[str, ChartSource] | None = None,
) -> StackPlan:
    """Prepend `addons` (every user chart depends on them), check the graph, cut waves.
    `clusters`: the targets, whose facts `values.clusters` and templated values use.

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
    problems += template_problems(spec)
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
        clusters={c.id: c for c in clusters},
        sources=dict(sources or {}),
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
