"""A rollout's status: stage records read back, `status.rollout`, its phase, conditions, Events.

The decision half lives in `herd.plan.stages`. Callers: `herd.rollout.staged`, the operator's
keeper and the CLI's stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from herd.api.status import (
    CheckFailure,
    RollbackCluster,
    RollbackStatus,
    RolloutStatus,
    StackStatus,
    StageStatus,
)
from herd.plan.stages import Decision, RolloutState, Stage, StageRecord
from herd.status.build import MESSAGE_LIMIT, TEXT_LIMIT, Phase, clip, conditions

ROLLBACK_CLUSTERS_LIMIT = 100  # clusters listed in status.rollout.rollback (all are counted)
ROLLBACK_EVENTS_LIMIT = 20  # RolledBack Events per rollback, one per cluster; then a summary


def records_of(status: RolloutStatus | None, stages: Sequence[Stage]) -> list[StageRecord]:
    """The persisted records of `stages`, matched by stage name (a renamed or new stage
    starts with an empty record)."""
    by_name = {s.name: s for s in status.stages} if status else {}
    out = []
    for stage in stages:
        saved = by_name.get(stage.name)
        if saved is None:
            out.append(StageRecord())
            continue
        moment = datetime.fromisoformat(saved.succeeded_at) if saved.succeeded_at else None
        failures = tuple((f.cluster_id, f.message) for f in saved.failed_checks)
        out.append(StageRecord(saved.config, moment, saved.approved, failures))
    return out


def _moment(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def rollback_status(
    stage: str, scope: str, config: str, at: datetime, clusters: Sequence[tuple[str, str, str]]
) -> RollbackStatus:
    """`status.rollout.rollback`: each cluster's (id, state, message), in order, bounded."""
    return RollbackStatus(
        stage=stage,
        scope=scope,
        config=config,
        at=_moment(at),
        clusters=[
            RollbackCluster(cluster_id=c, state=state, message=clip(message, 2 * MESSAGE_LIMIT))
            for c, state, message in clusters[:ROLLBACK_CLUSTERS_LIMIT]
        ],
        cluster_count=len(clusters),
    )


_CHECKS_LIMIT = 50


def _checks(items: Sequence[tuple[str, str]] | Mapping[str, str]) -> list[CheckFailure]:
    pairs = items.items() if isinstance(items, Mapping) else items
    return [
        CheckFailure(cluster_id=cluster, message=clip(message, 300))
        for cluster, message in sorted(pairs)[:_CHECKS_LIMIT]
    ]


def rollout_status(
    stages: Sequence[Stage],
    decision: Decision,
    *,
    held: Mapping[str, str] | None = None,
    rollback: RollbackStatus | None = None,
) -> RolloutStatus:
    """`status.rollout` for a decision: one entry per stage (at most MAX_STAGES + 1), with
    the clusters its checks failed (persisted) and hold now (`held`: cluster -> why), and
    the rollback of this configuration, if any."""
    held = held or {}
    return RolloutStatus(
        rollback=rollback,
        stage=decision.stage,
        state=decision.state.value,
        message=decision.message[:1000],
        stages=[
            StageStatus(
                name=stage.name,
                done=decision.done[i] if i < len(decision.done) else 0,
                total=len(stage.clusters),
                config=record.config,
                succeeded_at=_moment(record.succeeded_at),
                approved=record.approved,
                failed_checks=_checks(record.failures),
                held_checks=_checks({c: held[c] for c in stage.clusters if c in held}),
            )
            for i, (stage, record) in enumerate(zip(stages, decision.records, strict=False))
        ],
    )


# How a rollout state shows in the Stack's phase and kstatus conditions.
_WAITING = (RolloutState.PAUSED, RolloutState.WAITING_FOR_APPROVAL)


def with_rollout(status: StackStatus, rollout: RolloutStatus, now: datetime) -> StackStatus:
    """The Stack's status with `status.rollout`, and phase, message and conditions that
    say where the rollout stands: Paused and WaitingForApproval are Reconciling, not
    Stalled; Halted is Stalled (phase Degraded, or Failed when nothing is deployed);
    Suspended is neither, Ready only when every release is deployed. Progressing and
    Complete leave the release-based phase as it is."""
    status = _with_check_rows(status, rollout)
    state = RolloutState(rollout.state)
    if state in (RolloutState.PROGRESSING, RolloutState.COMPLETE):
        return status.model_copy(update={"rollout": rollout})
    phase = status.phase
    if state is RolloutState.HALTED:
        phase = Phase.DEGRADED if status.deployment_counts.get("Deployed") else Phase.FAILED
    elif state in _WAITING:
        phase = Phase.DEPLOYING
    message = clip(rollout.message, TEXT_LIMIT)
    found = conditions(
        phase,
        message,
        status.observed_generation,
        now,
        status.conditions,
        reason_override=state.value if state is not RolloutState.HALTED else "RolloutHalted",
    )
    if state is RolloutState.SUSPENDED:
        found = [
            c.model_copy(update={"status": "False"}) if c.type == "Reconciling" else c
            for c in found
        ]
    others = [c for c in status.conditions if c.type not in ("Ready", "Reconciling", "Stalled")]
    return status.model_copy(
        update={
            "rollout": rollout,
            "phase": phase,
            "message": message,
            "conditions": [*found, *others],
        }
    )


def with_checks(status: StackStatus, rollout: RolloutStatus, now: datetime) -> StackStatus:
    """`status` (the last one built) with where a pass in flight now stands after its
    checks spoke (`herd.rollout.staged.StageInputs.on_checks`): the rows' check messages
    and `status.rollout` replaced by the new ones, phase, message and conditions as
    `with_rollout` says (a stage held by a check is still Deploying, saying why). Rows,
    add-on sections and facts stay as they are until the pass's final write."""
    stale = _check_messages(status.rollout) if status.rollout else {}
    rows = [
        row.model_copy(update={"message": ""})
        if row.cluster_id in stale and row.message == clip(stale[row.cluster_id], TEXT_LIMIT)
        else row
        for row in status.deployments
    ]
    status = status.model_copy(update={"deployments": rows})
    if RolloutState(rollout.state) is not RolloutState.PROGRESSING:
        return with_rollout(status, rollout, now)
    message = clip(rollout.message, TEXT_LIMIT)
    found = conditions(
        Phase.DEPLOYING,
        message,
        status.observed_generation,
        now,
        status.conditions,
        reason_override=rollout.state,
    )
    others = [c for c in status.conditions if c.type not in ("Ready", "Reconciling", "Stalled")]
    status = status.model_copy(
        update={"phase": Phase.DEPLOYING, "message": message, "conditions": [*found, *others]}
    )
    return with_rollout(status, rollout, now)


def _check_messages(rollout: RolloutStatus) -> dict[str, str]:
    """Cluster -> what its stage's checks hold or failed it for (a failure wins)."""
    why = {f.cluster_id: f.message for s in rollout.stages for f in s.held_checks}
    return why | {f.cluster_id: f.message for s in rollout.stages for f in s.failed_checks}


def _with_check_rows(status: StackStatus, rollout: RolloutStatus) -> StackStatus:
    """Each row of a cluster a check failed or holds says so (its helm state stays): a
    deployed release with a failed check is the failure the operator must see first."""
    why = _check_messages(rollout)
    if not why:
        return status
    rows = [
        row.model_copy(update={"message": clip(why[row.cluster_id], TEXT_LIMIT)})
        if row.cluster_id in why and not row.message
        else row
        for row in status.deployments
    ]
    return status.model_copy(update={"deployments": rows})


Event = tuple[str, str, str]  # ("Normal" or "Warning", reason, message)


def rollout_events(previous: RolloutStatus | None, current: RolloutStatus) -> list[Event]:
    """The Events a change of `status.rollout` deserves: StageSucceeded for each stage
    newly succeeded (at a new config), StageStarted when a stage not yet succeeded at this
    config starts rolling out,
    WaitingForApproval and RolloutHalted when the rollout enters those states, and a new
    rollback's (`rollback_events`)."""
    before = {s.name: s for s in previous.stages} if previous else {}
    events: list[Event] = []
    for stage in current.stages:
        old = before.get(stage.name)
        new_success = stage.succeeded_at and (
            old is None or old.succeeded_at != stage.succeeded_at or old.config != stage.config
        )
        if new_success:
            events.append(
                (
                    "Normal",
                    "StageSucceeded",
                    f"Stage {stage.name} succeeded on {stage.total} clusters",
                )
            )
    events += _check_events(before, current)
    moved = previous is None or (previous.stage, previous.state) != (current.stage, current.state)
    now_at = next((s for s in current.stages if s.name == current.stage), None)
    fresh = now_at is not None and now_at.succeeded_at is None  # not yet done at this config
    if moved and current.state == RolloutState.PROGRESSING and fresh:
        events.append(
            ("Normal", "StageStarted", f"Stage {current.stage} started: {current.message}")
        )
    if moved and current.state == RolloutState.WAITING_FOR_APPROVAL:
        events.append(("Normal", "WaitingForApproval", current.message))
    if moved and current.state == RolloutState.HALTED:
        events.append(("Warning", "RolloutHalted", current.message))
    return events + rollback_events(previous, current)


def rollback_events(previous: RolloutStatus | None, current: RolloutStatus) -> list[Event]:
    """A new rollback (not the one `previous` shows): RolledBack per cluster rolled back,
    RollbackFailed per cluster that could not be (at most ROLLBACK_EVENTS_LIMIT, then one
    summary)."""
    new, old = current.rollback, previous.rollback if previous else None
    if new is None or (old is not None and (old.at, old.config) == (new.at, new.config)):
        return []
    events: list[Event] = []
    for row in new.clusters[:ROLLBACK_EVENTS_LIMIT]:
        failed = row.state == "Failed"
        reason = "RollbackFailed" if failed else "RolledBack"
        text = f"Cluster {row.cluster_id} ({new.stage} failed, scope {new.scope}): {row.message}"
        events.append(("Warning" if failed else "Normal", reason, text))
    if new.cluster_count > ROLLBACK_EVENTS_LIMIT:
        more = new.cluster_count - ROLLBACK_EVENTS_LIMIT
        events.append(("Normal", "RolledBack", f"{more} more clusters: see status.rollout"))
    return events


def _check_events(before: Mapping[str, StageStatus], current: RolloutStatus) -> list[Event]:
    """CheckFailed for each cluster a stage's check newly failed."""
    events: list[Event] = []
    for stage in current.stages:
        old = before.get(stage.name)
        known = {f.cluster_id for f in old.failed_checks} if old else set()
        for failure in stage.failed_checks:
            if failure.cluster_id not in known:
                text = f"Stage {stage.name}, cluster {failure.cluster_id}: {failure.message}"
                events.append(("Warning", "CheckFailed", text))
    return events
