"""What the CLI prints and how it exits: engine results → rows → table or JSON. Pure.

One row type per command (`ReleaseRow` for apply/delete, `PlanRow`, `StatusRow`); the
table and the JSON document are two renderings of the same rows, so a pipeline that
parses `--output json` sees exactly what a person reads in the table. The exit-code
functions are the CLI's half of the error taxonomy (`herd.errors`): SpecError → 2 is
mapped by the caller; everything per release is decided here.

Tables are `herd.cli.tables.Grid`s: plain columns for logs and pipes, byte for byte as
ever; a `rich` Table on a terminal. Each row type names its columns (`Row.COLUMNS`).

Nothing here prints values or kubeconfigs: rows hold names, states, versions, helm's
one-line messages and, in a plan, the *keys* of the values a release would set.

Callers: `herd.cli.fleet`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from herd.api.status import SkippedCluster
from herd.api.v1 import Stack
from herd.cli.constants import EXIT_CHANGES, EXIT_FAILED, EXIT_OK
from herd.cli.tables import Grid, Row
from herd.engine.engine import Preview
from herd.engine.protocols import StackResult
from herd.helm.chart_crds import crd_note
from herd.plan.decide import Action
from herd.plan.desired import changed_keys
from herd.plan.drift import ReleaseDrift
from herd.plan.placement import PlacementDecision
from herd.plan.releases import DesiredRelease, ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.build import phase_of, summary

KEYS_SHOWN = 5  # values keys listed per release in the plan table (JSON lists all)

_DONE_VERBS = {
    Action.INSTALL: "installed",
    Action.UPGRADE: "upgraded",
    Action.RECOVER: "recovered",
    Action.NOTHING: "unchanged",
    Action.ROLLBACK: "rolled back",
}
_PLAN_WORDS = {Action.NOTHING: "unchanged"}


def stack_ref(stack: Stack) -> dict[str, str]:
    return {"namespace": stack.namespace, "name": stack.name}


def skipped_rows(skipped: Sequence[SkippedCluster]) -> list[dict[str, str]]:
    return [{"cluster": s.cluster_id, "reason": s.reason} for s in skipped]


def skipped_lines(skipped: Sequence[SkippedCluster]) -> list[str]:
    return [f"skipped cluster {s.cluster_id}: {s.reason}" for s in skipped]


def placement_lines(decision: PlacementDecision | None) -> list[str]:
    """`targets.placement.pickN`: what is picked and why, why each other is not."""
    if decision is None:
        return []
    lines = [f"placement: {decision.reason}"]
    lines += [f"placement: not picked {c}: {why}" for c, why in decision.not_picked.items()]
    picked = ", ".join(decision.picked)
    return lines + [
        f"placement: {c} keeps its releases until those on {picked} are Deployed"
        for c in decision.leaving
    ]


def placement_document(decision: PlacementDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "clusters": list(decision.picked),
        "reason": decision.reason,
        "notPicked": [{"cluster": c, "reason": why} for c, why in decision.not_picked.items()],
        "leaving": list(decision.leaving),
    }


# -- apply and delete --------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseRow(Row):
    """One release after `herd apply` or `herd delete`."""

    COLUMNS = (
        "cluster",
        "chart",
        "release",
        "namespace",
        "status",
        "revision",
        "version",
        "message",
    )

    cluster: str
    chart: str
    release: str
    namespace: str
    status: str
    revision: int | None
    version: str | None
    action: str | None
    message: str


def result_message(result: ReleaseResult) -> str:
    """helm's message, or what happened when all went well ("upgraded", "unchanged")."""
    if result.message:
        return result.message
    if result.state is State.DEPLOYED and result.action in _DONE_VERBS:
        return _DONE_VERBS[result.action]
    return ""


def _placing(result: StackResult) -> Callable[[str, str, bool, str], tuple[str, int, str]]:
    """Sort key of a row: by cluster, then the plan's wave order, releases removed last."""
    waves = result.plan.waves if result.plan else ()
    order = {name: i for i, wave in enumerate(waves) for name in wave}

    def place(cluster: str, chart: str, removing: bool, release: str) -> tuple[str, int, str]:
        return cluster, len(order) if removing else order.get(chart, len(order)), release

    return place


def release_rows(result: StackResult) -> list[ReleaseRow]:
    """Rows by cluster, then in the plan's wave order; releases being removed last."""
    place = _placing(result)
    ordered = sorted(
        result.releases,
        key=lambda r: place(r.key.cluster, r.chart, r.action is Action.UNINSTALL, r.key.name),
    )
    return [
        ReleaseRow(
            cluster=r.key.cluster,
            chart=r.chart,
            release=r.key.name,
            namespace=r.key.namespace,
            status=r.state.value,
            revision=r.revision,
            version=r.chart_version,
            action=r.action.value if r.action else None,
            message=result_message(r),
        )
        for r in ordered
    ]


def apply_exit(result: StackResult) -> int:
    """0 only when every targeted release is deployed on every targeted cluster."""
    if not result.targets or result.skipped:
        return EXIT_FAILED
    ok = all(r.state in (State.DEPLOYED, State.UNINSTALLED) for r in result.releases)
    return EXIT_OK if ok else EXIT_FAILED


def delete_exit(result: StackResult) -> int:
    """0 when everything found was uninstalled and no cluster had to be skipped."""
    if result.skipped:
        return EXIT_FAILED
    return EXIT_OK if all(r.state is State.UNINSTALLED for r in result.releases) else EXIT_FAILED


def with_unreadable(result: StackResult, unreachable: Mapping[str, str]) -> StackResult:
    """`result` with the clusters that could not be read added to its skipped ones."""
    known = {s.cluster_id for s in result.skipped}
    extra = [
        SkippedCluster(cluster_id=cluster, reason=f"{reason}; its releases may remain")
        for cluster, reason in sorted(unreachable.items())
        if cluster not in known
    ]
    return replace(result, skipped=[*result.skipped, *extra]) if extra else result


def apply_summary(result: StackResult) -> str:
    if not result.targets and not result.skipped:
        return "No given cluster matches the Stack's targets; nothing deployed"
    return summary(result.releases, result.skipped)


def delete_summary(result: StackResult) -> str:
    clusters = len(result.targets)
    if result.skipped and not result.releases:
        return (
            f"{len(result.skipped)} of {clusters} clusters could not be read; nothing uninstalled"
        )
    if not result.releases:
        return f"Nothing to uninstall: no release of this Stack on {clusters} clusters"
    left = [r for r in result.releases if r.state is not State.UNINSTALLED]
    if left:
        first = left[0]
        return (
            f"{len(left)} of {len(result.releases)} releases not uninstalled; first: "
            f"{first.chart} on {first.key.cluster}: {first.message or first.state.lower()}"
        )
    touched = len({r.key.cluster for r in result.releases})
    return f"Uninstalled {len(result.releases)} releases from {touched} clusters"


def release_document(
    stack: Stack, result: StackResult, rows: Sequence[ReleaseRow], text: str
) -> dict[str, Any]:
    """`--output json` of apply and delete: the table's rows plus phase and summary."""
    return {
        "stack": stack_ref(stack),
        "phase": phase_of(result.releases, result.skipped),
        "summary": text,
        "targets": [c.id for c in result.targets],
        "skipped": skipped_rows(result.skipped),
        "releases": [asdict(row) for row in rows],
    }


def release_grid(rows: Sequence[ReleaseRow]) -> Grid:
    return Grid.of(ReleaseRow.headers(), (row.cells() for row in rows))


def release_table(rows: Sequence[ReleaseRow]) -> str:
    return str(release_grid(rows))


# -- plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRow(Row):
    """One line of `herd plan`. `revision` is helm's current one; `version` the desired chart
    version. `values` lists the keys a new release sets (an upgrade's changed keys cannot be
    known: the engine does not read deployed values)."""

    cluster: str
    chart: str
    release: str
    namespace: str
    action: str
    revision: int | None
    version: str | None
    reason: str
    values: list[str] = field(default_factory=list)
    # Drifted fields a correction would restore (`kind/name: pointer`), checked now.
    drift: list[str] = field(default_factory=list)
    COLUMNS = (
        "cluster",
        "chart",
        "release",
        "namespace",
        "action",
        "revision",
        "version",
        "detail",
    )

    @property
    def detail(self) -> str:
        if self.drift:
            drifted = "drift: " + ", ".join(self.drift)
            return f"{self.reason}; {drifted}" if self.reason else drifted
        if not self.values:
            return self.reason
        keys = ", ".join(self.values[:KEYS_SHOWN])
        more = len(self.values) - KEYS_SHOWN
        return f"{self.reason}; values: {keys}" + (f" (+{more} more)" if more > 0 else "")


def plan_rows(stack: Stack, result: StackResult, previews: Sequence[Preview]) -> list[PlanRow]:
    rows = []
    for preview in previews:
        desired, observed = preview.desired, preview.observed
        reason = preview.reason
        action = preview.decision.action
        rows.append(
            PlanRow(
                cluster=preview.key.cluster,
                chart=desired.chart.name if desired else _observed_chart(observed),
                release=preview.key.name,
                namespace=preview.key.namespace,
                action=_PLAN_WORDS.get(action, action.value),
                revision=observed.revision if observed else None,
                version=desired.chart.version if desired else None,
                reason="" if action is Action.NOTHING else reason + _crds(desired, action),
                values=changed_keys({}, desired.values)
                if desired and action is Action.INSTALL
                else [],
                drift=_drift_entries(preview),
            )
        )
    place = _placing(result)
    return sorted(rows, key=lambda r: place(r.cluster, r.chart, r.action == "uninstall", r.release))


def _crds(desired: DesiredRelease | None, action: Action) -> str:
    """ "; CRDs: CreateReplace" on an install or upgrade whose chart is not helm's default."""
    if desired is None or action not in (Action.INSTALL, Action.UPGRADE):
        return ""
    return crd_note(desired.chart.crds)


def _drift_entries(preview: Preview) -> list[str]:
    drift = preview.drift
    if drift is None:
        return []
    return [*drift.entries(KEYS_SHOWN), *(f"({p})" for p in drift.problems[:1])]


def _observed_chart(observed: ObservedRelease | None) -> str:
    return observed.chart if observed else ""


def plan_exit(result: StackResult, rows: Sequence[PlanRow]) -> int:
    """3 when applying would change something, 0 when not; 1 when apply could not
    succeed as planned (a conflict, a skipped cluster, no target at all)."""
    blocked = (Action.CONFLICT, Action.INVALID)
    if not result.targets or result.skipped or any(r.action in blocked for r in rows):
        return EXIT_FAILED
    # A requireFit refusal changes nothing: Apply leaves the release out, by the rule.
    changes = any(r.action not in ("unchanged", Action.REFUSED) for r in rows)
    return EXIT_CHANGES if changes else EXIT_OK


def plan_summary(result: StackResult, rows: Sequence[PlanRow]) -> str:
    if not result.targets and not result.skipped:
        return "No given cluster matches the Stack's targets"
    counts = Counter(r.action for r in rows)
    words = [
        f"{counts[a]} to {a}" for a in ("install", "upgrade", "recover", "uninstall") if counts[a]
    ]
    if counts["refused"]:  # targets.placement.requireFit
        words.append(f"{counts['refused']} refused")
    if counts["conflict"]:
        words.append(f"{counts['conflict']} in conflict")
    if counts["invalid"]:
        words.append(f"{counts['invalid']} invalid")
    words.append(f"{counts['unchanged']} unchanged")
    clusters = len({r.cluster for r in rows})
    text = f"Plan: {', '.join(words)} on {clusters} clusters"
    return text + (f"; {len(result.skipped)} clusters skipped" if result.skipped else "")


def plan_document(
    stack: Stack, result: StackResult, rows: Sequence[PlanRow], text: str
) -> dict[str, Any]:
    return {
        "stack": stack_ref(stack),
        "changes": any(r.action not in ("unchanged", Action.REFUSED) for r in rows),
        "summary": text,
        "targets": [c.id for c in result.targets],
        "skipped": skipped_rows(result.skipped),
        "placement": placement_document(result.placement),
        "releases": [{**asdict(row), "detail": row.detail} for row in rows],
    }


def plan_grid(rows: Sequence[PlanRow]) -> Grid:
    return Grid.of(PlanRow.headers(), (row.cells() for row in rows))


def plan_table(rows: Sequence[PlanRow]) -> str:
    return str(plan_grid(rows))


# -- status ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow(Row):
    """One Herd-managed release as helm's storage labels describe it."""

    COLUMNS = ("cluster", "stack", "chart", "release", "namespace", "status", "revision", "drift")

    cluster: str
    stack: str  # the owner label: `namespace.name` of the Stack (hashed when too long)
    chart: str
    release: str
    namespace: str
    status: str
    revision: int
    drift: str = ""  # with `-f STACK`: its drifted fields, checked now (`kind/name: pointer`)


def status_rows(
    observed: Mapping[str, Iterable[ObservedRelease]], owner: str | None = None
) -> list[StatusRow]:
    """Releases carrying Herd's owner label (only `owner`'s when given), by cluster."""
    rows = [
        StatusRow(cluster, o.owner, o.chart, o.name, o.namespace, o.status, o.revision)
        for cluster, releases in observed.items()
        for o in releases
        if o.owner is not None and owner in (None, o.owner)
    ]
    return sorted(rows, key=lambda r: (r.cluster, r.stack, r.namespace, r.release))


def with_drift(
    rows: Sequence[StatusRow], found: Mapping[ReleaseKey, ReleaseDrift]
) -> list[StatusRow]:
    """`herd status -f STACK`: each row with its release's drift, "" when none."""
    out = []
    for row in rows:
        drift = found.get(ReleaseKey(row.cluster, row.namespace, row.release))
        text = ", ".join([*drift.entries(KEYS_SHOWN), *drift.problems[:1]]) if drift else ""
        out.append(replace(row, drift=text))
    return out


def status_exit(rows: Sequence[StatusRow], unreachable: Mapping[str, str]) -> int:
    healthy = all(r.status == "deployed" for r in rows)
    return EXIT_OK if healthy and not unreachable else EXIT_FAILED


def status_summary(rows: Sequence[StatusRow], clusters: int, unreachable: Mapping[str, str]) -> str:
    bad = sum(r.status != "deployed" for r in rows)
    text = f"{len(rows)} Herd-managed releases on {clusters - len(unreachable)} clusters"
    if bad:
        text += f", {bad} not deployed"
    if unreachable:
        text += f"; {len(unreachable)} clusters could not be read"
    return text


def status_document(
    rows: Sequence[StatusRow], unreachable: Mapping[str, str], text: str
) -> dict[str, Any]:
    return {
        "summary": text,
        "unreachable": [{"cluster": c, "reason": r} for c, r in sorted(unreachable.items())],
        "releases": [asdict(row) for row in rows],
    }


def status_grid(rows: Sequence[StatusRow]) -> Grid:
    return Grid.of(StatusRow.headers(), (row.cells() for row in rows))


def status_table(rows: Sequence[StatusRow]) -> str:
    return str(status_grid(rows))
