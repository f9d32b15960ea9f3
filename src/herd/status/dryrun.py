"""`spec.mode: DryRun`: what Apply would do, as the Stack's status. Pure.

The operator's keeper runs `Engine.preview` (the read-only planner `herd plan` uses, so
both say the same) instead of `Engine.apply`, and no helm write happens. `planned` turns
each preview row into a `ReleaseResult` of state `Planned` whose `action` is what Apply
would do (install, upgrade, uninstall, nothing, conflict, invalid, recover, wait, held,
refused: `targets.placement.requireFit`)
and whose message says it in words, with the version for install and upgrade. Values are
never in a message. Targets whose releases could not be read get `Unreachable` rows.

`dry_run_status` is the status: phase `DryRun`, the message counts the actions, and the
kstatus conditions (reason `DryRun`) are

- `Ready` True only when Apply would change nothing (every release up to date);
- `Reconciling` False: the controller has nothing more to do until the spec changes;
- `Stalled` True when Apply could not succeed as planned (a conflict, a value that cannot
  be rendered, a held failure, a cluster unreachable, skipped or not granted).

Callers: `herd.status.pipeline` (`dry_run_status`), the operator's keeper (`preview_rows`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from herd.api.status import SkippedCluster, StackStatus
from herd.plan.decide import Action, Decision
from herd.plan.desired import StackPlan
from herd.plan.releases import DesiredRelease, ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.build import Phase, conditions, stack_status

DRY_RUN = "DryRun"  # the Stack's phase, and the reason of its conditions
UP_TO_DATE = "up to date"
# Actions after which Apply would not have the release as desired.
BLOCKED = (Action.CONFLICT, Action.INVALID, Action.HELD)
_VERB = {
    Action.INSTALL: "would install",
    Action.UPGRADE: "would upgrade",
    Action.UNINSTALL: "would uninstall",
    Action.RECOVER: "would recover, then deploy",
}
_ORDER = (
    "install",
    "upgrade",
    "recover",
    "uninstall",
    "conflict",
    "invalid",
    "held",
    "wait",
    "refused",
)


def message(
    desired: DesiredRelease | None, observed: ObservedRelease | None, decision: Decision
) -> str:
    """What Apply would do to one release, in words (never a value)."""
    action, reason = decision.action, decision.reason
    if action is Action.NOTHING:
        return UP_TO_DATE if desired is not None else reason
    verb = _VERB.get(action)
    if verb is None:
        return reason
    version = desired.chart.version if desired is not None else None
    if action in (Action.INSTALL, Action.UPGRADE) and version and "->" not in reason:
        return f"{verb} version {version}: {reason}"
    return f"{verb}: {reason}"


def planned(
    key: ReleaseKey,
    desired: DesiredRelease | None,
    observed: ObservedRelease | None,
    decision: Decision,
) -> ReleaseResult:
    """One preview row as a `Planned` result."""
    return ReleaseResult(
        key,
        desired.chart.name if desired is not None else (observed.chart if observed else key.name),
        State.PLANNED,
        action=decision.action,
        revision=observed.revision if observed else None,
        chart_version=observed.chart_version if observed else None,
        message=message(desired, observed, decision),
        config=desired.config if desired is not None else None,
    )


def unreachable_rows(plan: StackPlan | None, unreachable: Mapping[str, str]) -> list[ReleaseResult]:
    """Rows for the releases on targets whose helm releases could not be read."""
    if plan is None:
        return []
    return [
        ReleaseResult(release.key, release.chart.name, State.UNREACHABLE, message=why)
        for cluster, why in sorted(unreachable.items())
        if cluster in plan.clusters
        for release in plan.releases_for(cluster)
    ]


class Preview(Protocol):
    """One preview row (`herd.engine.protocols.Preview`)."""

    @property
    def key(self) -> ReleaseKey: ...

    @property
    def desired(self) -> DesiredRelease | None: ...

    @property
    def observed(self) -> ObservedRelease | None: ...

    @property
    def decision(self) -> Decision: ...


def preview_rows(
    releases: Sequence[ReleaseResult],
    plan: StackPlan | None,
    unreachable: Mapping[str, str],
    previews: Sequence[Preview],
) -> list[ReleaseResult]:
    """A dry run's rows: the pass's own results, the releases on clusters that could not
    be read (`Unreachable`), and one `Planned` row per preview."""
    rows = [*releases, *unreachable_rows(plan, unreachable)]
    return rows + [planned(p.key, p.desired, p.observed, p.decision) for p in previews]


def summary(results: Sequence[ReleaseResult], skipped: Sequence[SkippedCluster]) -> str:
    """`Dry run (nothing written): 1 to install, 2 unchanged on 3 clusters`."""
    counts = Counter(r.action.value for r in results if r.action is not None)
    words = [f"{counts[a]} to {a}" for a in _ORDER[:4] if counts[a]]
    words += [f"{counts[a]} {a}" for a in _ORDER[4:] if counts[a]]
    words.append(f"{counts[Action.NOTHING.value]} unchanged")
    other = Counter(r.state.value for r in results if r.state is not State.PLANNED)
    words += [f"{n} {state.lower()}" for state, n in sorted(other.items())]
    clusters = len({r.key.cluster for r in results})
    text = f"Dry run (nothing written): {', '.join(words)} on {clusters} clusters"
    return text + (f"; {len(skipped)} clusters skipped" if skipped else "")


def state_of(results: Sequence[ReleaseResult], skipped: Sequence[SkippedCluster]) -> str:
    """The phase whose Ready/Reconciling/Stalled the conditions take: Deployed (nothing
    would change), Failed (Apply could not succeed as planned) or DryRun (all False)."""
    blocked = skipped or any(r.state is not State.PLANNED or r.action in BLOCKED for r in results)
    if blocked:
        return Phase.FAILED
    if results and all(r.action is Action.NOTHING for r in results):
        return Phase.DEPLOYED
    return DRY_RUN


def dry_run_status(
    results: Sequence[ReleaseResult],
    *,
    targets: Sequence[str],
    skipped: Sequence[SkippedCluster],
    chart_count: int,
    generation: int | None,
    now: datetime,
    previous: StackStatus | None,
    max_rows: int,
    reconcile_at: str | None,
) -> StackStatus:
    """The Stack's status after a dry run: rows say what Apply would do. The release
    record is kept as it was (nothing changed anywhere)."""
    status = stack_status(
        results,
        targets=targets,
        skipped=skipped,
        chart_count=chart_count,
        generation=generation,
        now=now,
        previous=previous,
        max_rows=max_rows,
        phase=DRY_RUN,
        reconcile_at=reconcile_at,
    )
    return worded(status, results, skipped, now, previous)


def worded(
    status: StackStatus,
    results: Sequence[ReleaseResult],
    skipped: Sequence[SkippedCluster],
    now: datetime,
    previous: StackStatus | None,
) -> StackStatus:
    """`status` (built with phase DryRun) with the dry run's message and conditions."""
    text = summary(results, skipped)
    generation = status.observed_generation
    return status.model_copy(
        update={
            "message": text,
            "conditions": conditions(
                state_of(results, skipped),
                text,
                generation,
                now,
                previous.conditions if previous else (),
                reason_override=DRY_RUN,
            ),
        }
    )
