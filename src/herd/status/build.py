"""Release results → the Stack's status: phase, message, conditions and bounded rows.

Pure. The operator calls `stack_status` after every progress event of a rollout (so the
status lives while helm runs) and at the end; the CLI uses `phase_of` and `summary`.
Conditions follow kstatus (`Ready`, `Reconciling`, `Stalled`) so Argo CD, Flux and
`kubectl wait --for=condition=Ready` understand a Stack without custom health checks;
a deletion that waits adds `Deleting` (`deleting_status`).

Everything is bounded, so the object stays small at 1000 clusters × 20 charts: rows
(failing rows first, with per-state counts of every row), target, skipped and
release-holding cluster lists (each with its full count), messages and condition texts.
`release_record` keeps the persisted list of clusters that may hold the Stack's
releases (`status.releaseClusters`), so a restart or a cluster that was down while the
Stack left it is still cleaned up.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime

from herd.api.status import Condition, DeploymentRow, SkippedCluster, StackStatus
from herd.plan.results import ReleaseResult, State
from herd.status.drift import drift_row

DEFAULT_MAX_ROWS = 100
MESSAGE_LIMIT = 200  # a row's message, a skipped cluster's reason
TEXT_LIMIT = 1000  # the Stack's message and condition messages (spec errors list problems)
RELEASE_CLUSTERS_LIMIT = 1000  # beyond this, passes and deletion check every cluster

# Rows a reader must see first when the list is cut.
_ROW_ORDER = {
    State.FAILED: 0,
    State.NOT_GRANTED: 1,
    State.UNREACHABLE: 2,
    State.SKIPPED: 3,
    State.DEPLOYING: 4,
    State.UNINSTALLING: 5,
    State.PENDING: 6,
    State.DEPLOYED: 7,
    State.UNINSTALLED: 8,
    State.PLANNED: 9,
}
_BAD = (State.FAILED, State.UNREACHABLE, State.SKIPPED, State.NOT_GRANTED)
NOT_GRANTED_REASON = "NotGranted"  # condition reason of a Stack no grant lets deploy anywhere
_BUSY = (State.PENDING, State.DEPLOYING, State.UNINSTALLING)


class Phase:
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    DELETING = "Deleting"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def not_granted(releases: Sequence[ReleaseResult], skipped: Sequence[SkippedCluster]) -> bool:
    """True when the Stack may deploy nowhere: every row (or, without rows, every skipped
    cluster) is not granted."""
    live = [r for r in releases if r.state is not State.UNINSTALLED]
    if live:
        return all(r.state is State.NOT_GRANTED for r in live)
    return bool(skipped) and all(s.reason.startswith("not granted") for s in skipped)


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


def row(result: ReleaseResult, held_message: str = "") -> DeploymentRow:
    """The status row of a release. A permanent failure keeps the config digest it failed
    with (`failedConfig`), so the next pass holds it; a held one keeps its first message."""
    message = clip(held_message if result.held and held_message else result.message, MESSAGE_LIMIT)
    permanent = result.state is State.FAILED and not result.transient and result.config
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
        failed_config=result.config if permanent else None,
        action=result.action.value if result.action else None,
        drift=drift_row(result.drift),
    )


def rows(
    releases: Sequence[ReleaseResult], limit: int, previous: Sequence[DeploymentRow] = ()
) -> list[DeploymentRow]:
    # The first `limit` rows only: a partial sort keeps a status build linear in the
    # releases (it runs every second of a pass; a full sort made 1,000 clusters slow).
    ordered = heapq.nsmallest(
        limit,
        (r for r in releases if r.state is not State.UNINSTALLED),
        key=lambda r: (_ROW_ORDER[r.state], r.key.cluster, r.key.namespace, r.key.name),
    )
    before = {(p.cluster_id, p.namespace, p.release_name): p.message for p in previous}
    return [row(r, before.get((r.key.cluster, r.key.namespace, r.key.name), "")) for r in ordered]


def release_record(
    previous: Collection[str], holding: Collection[str], unverified: Collection[str]
) -> list[str]:
    """Clusters that hold or may hold the Stack's releases after a pass, sorted.

    `holding`: what the pass found or could not rule out. A previously recorded cluster
    stays while the pass could not verify it (`unverified`: unreachable, in backoff, not
    ready, gone from the inventory); the pass confirmed every other one clean.
    """
    return sorted(set(holding) | (set(previous) & set(unverified)))


def conditions(
    phase: str,
    message: str,
    generation: int | None,
    now: datetime,
    previous: Sequence[Condition] = (),
    *,
    reason_override: str | None = None,
) -> list[Condition]:
    """Ready / Reconciling / Stalled for `phase`; transition times kept when unchanged."""
    ready = phase == Phase.DEPLOYED
    message = clip(message, TEXT_LIMIT)
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
    reason = reason_override or reason
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
    release_clusters: Sequence[str] | None = None,
    reconcile_at: str | None = None,
    cluster_count: int | None = None,
) -> StackStatus:
    """The whole status for a pass (in progress or finished).

    `release_clusters` None keeps the previous record; `cluster_count` None counts
    `targets` (a pass in progress passes the last count with the last, bounded, list)."""
    denied = phase is None and not_granted(releases, skipped)
    phase = Phase.FAILED if denied else (phase or phase_of(releases, skipped))
    message = clip(summary(releases, skipped), TEXT_LIMIT)
    live = [r for r in releases if r.state is not State.UNINSTALLED]
    record, record_count = (
        (release_clusters, len(release_clusters))
        if release_clusters is not None
        else ((previous.release_clusters, previous.release_cluster_count) if previous else ([], 0))
    )
    return StackStatus(
        phase=phase,
        message=message,
        observed_generation=generation,
        reconcile_at=reconcile_at,
        cluster_count=len(targets) if cluster_count is None else cluster_count,
        chart_count=chart_count,
        target_clusters=list(targets[:max_rows]),
        skipped_clusters=[
            s.model_copy(update={"reason": clip(s.reason, MESSAGE_LIMIT)})
            for s in skipped[:max_rows]
        ],
        skipped_cluster_count=len(skipped),
        release_clusters=list(record[:RELEASE_CLUSTERS_LIMIT]),
        release_cluster_count=max(record_count, len(record)),
        conditions=conditions(
            phase,
            message,
            generation,
            now,
            previous.conditions if previous else (),
            reason_override=NOT_GRANTED_REASON if denied else None,
        ),
        deployments=rows(releases, max_rows, previous.deployments if previous else ()),
        deployment_counts=dict(sorted(Counter(r.state.value for r in live).items())),
        security=previous.security if previous else None,
        observability=previous.observability if previous else None,
    )


def failed_status(
    message: str,
    generation: int | None,
    now: datetime,
    previous: StackStatus | None = None,
    *,
    phase: str = Phase.FAILED,
) -> StackStatus:
    """Status of a Stack whose pass could not run (invalid spec, or an unforeseen error
    named in `message`): nothing changed, so what the previous status knew is kept."""
    message = clip(message, TEXT_LIMIT)
    kept = previous or StackStatus()
    return kept.model_copy(
        update={
            "phase": phase,
            "message": message,
            "observed_generation": generation,
            "conditions": conditions(phase, message, generation, now, kept.conditions),
        }
    )


def deleting_status(
    reason: str, message: str, generation: int | None, now: datetime, previous: StackStatus | None
) -> StackStatus:
    """Status of a Stack whose deletion waits: phase Deleting and a `Deleting` condition
    (reason `ClusterUnreachable` or `UninstallFailed`) naming what it waits for."""
    message = clip(message, TEXT_LIMIT)
    status = failed_status(message, generation, now, previous, phase=Phase.DELETING)
    old = next((c for c in (previous.conditions if previous else []) if c.type == "Deleting"), None)
    same = old is not None and old.reason == reason and old.status == "True"
    deleting = Condition(
        type="Deleting",
        status="True",
        reason=reason,
        message=message,
        last_transition_time=old.last_transition_time if same and old else rfc3339(now),
        observed_generation=generation,
    )
    return status.model_copy(update={"conditions": [*status.conditions, deleting]})
