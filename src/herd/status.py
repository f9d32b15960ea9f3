"""Release results → the Stack's status: phase, message, conditions and bounded rows.

Pure. The operator calls `stack_status` after every progress event of a rollout (so the
status lives while helm runs) and at the end; the CLI uses `phase_of` and `summary`.
Conditions follow kstatus (`Ready`, `Reconciling`, `Stalled`) so Argo CD, Flux and
`kubectl wait --for=condition=Ready` understand a Stack without custom health checks.
The row list is capped (failing rows first) with per-state counts of every row, so the
object stays small at 100 clusters × 20 charts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from herd.api.v1 import Condition, DeploymentRow, SkippedCluster, StackStatus
from herd.results import ReleaseResult, State

DEFAULT_MAX_ROWS = 100
MESSAGE_LIMIT = 200

# Rows a reader must see first when the list is cut.
_ROW_ORDER = {
    State.FAILED: 0,
    State.UNREACHABLE: 1,
    State.SKIPPED: 2,
    State.DEPLOYING: 3,
    State.UNINSTALLING: 4,
    State.PENDING: 5,
    State.DEPLOYED: 6,
    State.UNINSTALLED: 7,
}
_BAD = (State.FAILED, State.UNREACHABLE, State.SKIPPED)
_BUSY = (State.PENDING, State.DEPLOYING, State.UNINSTALLING)


class Phase:
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    DELETING = "Deleting"


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def phase_of(releases: Sequence[ReleaseResult], skipped: Sequence[SkippedCluster]) -> str:
    states: Counter[State] = Counter(r.state for r in releases if r.state is not State.UNINSTALLED)
    if any(states[s] for s in _BUSY):
        return Phase.DEPLOYING
    bad = sum(states[s] for s in _BAD)
    if not states:
        return Phase.FAILED if skipped else Phase.PENDING
    if bad == sum(states.values()):
        return Phase.FAILED
    if bad or skipped:
        return Phase.DEGRADED
    return Phase.DEPLOYED


def summary(releases: Sequence[ReleaseResult], skipped: Sequence[SkippedCluster]) -> str:
    """One human sentence on where the Stack stands."""
    live = [r for r in releases if r.state is not State.UNINSTALLED]
    clusters = len({r.key.cluster for r in live})
    deployed = sum(r.state is State.DEPLOYED for r in live)
    failed = [r for r in live if r.state in _BAD]
    if not live:
        if skipped:
            return f"No target cluster is usable: {skipped[0].cluster_id}: {skipped[0].reason}"
        return "No cluster matches the Stack's targets"
    if any(r.state in _BUSY for r in live):
        return f"Deploying: {deployed} of {len(live)} releases ready on {clusters} clusters"
    if failed:
        first = failed[0]
        text = (
            f"{len(failed)} of {len(live)} releases not deployed; first: {first.chart} on "
            f"{first.key.cluster}: {first.state.lower()}"
        )
        return text + (f" ({first.message})" if first.message else "")
    text = f"All {len(live)} releases deployed on {clusters} clusters"
    return text + (f"; {len(skipped)} clusters skipped" if skipped else "")


def row(result: ReleaseResult) -> DeploymentRow:
    message = result.message
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return DeploymentRow(
        chart_name=result.chart,
        cluster_id=result.key.cluster,
        release_name=result.key.name,
        namespace=result.key.namespace,
        status=result.state.value,
        revision=result.revision,
        chart_version=result.chart_version,
        message=message,
        last_updated=rfc3339(result.updated),
    )


def rows(releases: Sequence[ReleaseResult], limit: int) -> list[DeploymentRow]:
    ordered = sorted(
        (r for r in releases if r.state is not State.UNINSTALLED),
        key=lambda r: (_ROW_ORDER[r.state], r.key.cluster, r.key.namespace, r.key.name),
    )
    return [row(r) for r in ordered[:limit]]


def conditions(
    phase: str,
    message: str,
    generation: int | None,
    now: datetime,
    previous: Sequence[Condition] = (),
) -> list[Condition]:
    """Ready / Reconciling / Stalled for `phase`; transition times kept when unchanged."""
    ready = phase == Phase.DEPLOYED
    reconciling = phase in (Phase.DEPLOYING, Phase.DELETING, Phase.PENDING)
    stalled = phase in (Phase.FAILED, Phase.DEGRADED)
    reason = {
        Phase.PENDING: "NoTargets",
        Phase.DEPLOYING: "Progressing",
        Phase.DEPLOYED: "DeploymentSucceeded",
        Phase.DEGRADED: "ReleasesFailed",
        Phase.FAILED: "DeploymentFailed",
        Phase.DELETING: "Deleting",
    }.get(phase, phase)
    wanted = [("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled)]
    before = {c.type: c for c in previous}
    out = []
    for kind, value in wanted:
        status = "True" if value else "False"
        old = before.get(kind)
        since = old.last_transition_time if old and old.status == status else None
        out.append(
            Condition(
                type=kind,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=since or rfc3339(now),
                observed_generation=generation,
            )
        )
    return out


def stack_status(
    releases: Sequence[ReleaseResult],
    *,
    targets: Sequence[str],
    skipped: Sequence[SkippedCluster],
    chart_count: int,
    generation: int | None,
    now: datetime,
    previous: StackStatus | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    phase: str | None = None,
) -> StackStatus:
    """The whole status for a pass (in progress or finished)."""
    phase = phase or phase_of(releases, skipped)
    message = summary(releases, skipped)
    live = [r for r in releases if r.state is not State.UNINSTALLED]
    return StackStatus(
        phase=phase,
        message=message,
        observed_generation=generation,
        cluster_count=len(targets),
        chart_count=chart_count,
        target_clusters=list(targets),
        skipped_clusters=list(skipped),
        conditions=conditions(
            phase, message, generation, now, previous.conditions if previous else ()
        ),
        deployments=rows(releases, max_rows),
        deployment_counts=dict(sorted(Counter(r.state.value for r in live).items())),
        security=previous.security if previous else None,
        observability=previous.observability if previous else None,
    )


def failed_status(
    message: str, generation: int | None, now: datetime, previous: StackStatus | None = None
) -> StackStatus:
    """Status of a Stack whose spec is invalid: nothing was deployed or changed."""
    return StackStatus(
        phase=Phase.FAILED,
        message=message,
        observed_generation=generation,
        target_clusters=previous.target_clusters if previous else [],
        cluster_count=previous.cluster_count if previous else 0,
        chart_count=previous.chart_count if previous else 0,
        conditions=conditions(
            Phase.FAILED, message, generation, now, previous.conditions if previous else ()
        ),
        deployments=previous.deployments if previous else [],
        deployment_counts=previous.deployment_counts if previous else {},
    )
