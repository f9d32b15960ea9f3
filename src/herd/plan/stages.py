"""Staged rollouts, decided: which cluster is in which stage, and where the rollout stands.

Pure. `assign_stages` puts every targeted cluster in the first stage of `spec.rollout`
that selects it; the clusters no stage selects form a last, implicit stage named
`IMPLICIT_STAGE` ("remaining"), with no pause and no concurrency bound of its own.
`resolve_max_concurrent` turns `maxConcurrent` (a number or "25%") into a number of
clusters (percentages of the stage size, rounded down, at least 1).

`decide` is the rollout's one decision. From the stages, what is known of each cluster
(`ClusterState`: deployed at the current config, failed, or pending; absent when the pass
has not looked at it yet), what the status remembers of each stage (`StageRecord`: the
config digest it succeeded at, since when, whether approved), the clock, the approval
annotation and `maxFailures`, it says which stage may run now (`Decision.active`; None:
nothing may), the rollout's state and message, and the new records to persist. Stages are
walked in order; a stage whose clusters are all deployed is succeeded, its soak pause
measured from `succeededAt` (kept while its config digest stays the same, so a restart
does not reset it), its approval gate passed when `herd.suse.com/approve=<stage>` is set.

Callers: `herd.rollout.staged` (the engine's staged pass), `herd.status.build` (conditions).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from herd.api.rollout import IMPLICIT_STAGE, RolloutSpec, RolloutStage
from herd.api.targets import Targets
from herd.names import APPROVE_ANNOTATION
from herd.plan.checks import StageChecks, merge_checks
from herd.plan.clusters import Cluster
from herd.plan.releases import DesiredRelease
from herd.plan.targets import targets_match


class RolloutState(enum.StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    HALTED = "Halted"
    COMPLETE = "Complete"
    SUSPENDED = "Suspended"


class ClusterState(enum.StrEnum):
    DONE = "Done"  # every desired release deployed at the current config
    FAILED = "Failed"  # a release failed, or the cluster could not be reached or used
    PENDING = "Pending"  # not (yet) at the current config, nothing failed


@dataclass(frozen=True)
class Stage:
    name: str
    clusters: tuple[str, ...]  # cluster ids, sorted
    max_concurrent: int  # resolved: 1 ≤ n ≤ max(1, len(clusters))
    pause_seconds: float | None = None  # soak time after the stage succeeded
    approval: bool = False  # wait for herd.suse.com/approve=<name> after it succeeded
    implicit: bool = False
    checks: StageChecks | None = None  # health gates (`herd.plan.checks`); None: none


@dataclass(frozen=True)
class StageRecord:
    """What the status remembers of a stage: the config digest it succeeded at, when,
    and whether its approval gate was passed at that config."""

    config: str | None = None
    succeeded_at: datetime | None = None
    approved: bool = False
    # cluster -> why a check failed it at this config (`herd.rollout.checks`): it stays
    # failed until the stage's config changes.
    failures: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    stage: str  # the stage running or waited on ("" when there are no clusters)
    message: str
    active: int | None  # index of the stage that may make helm writes now
    records: tuple[StageRecord, ...]
    wake_at: datetime | None = None  # a soak pause ends then
    approved: str | None = None  # the stage the annotation approved in this decision
    waiting: str = ""  # what the clusters of later stages wait for (their rows say it)
    done: tuple[int, ...] = field(default=())  # per stage: clusters at the current config


def resolve_max_concurrent(value: int | str | None, size: int) -> int:
    """Clusters of a stage of `size` at once: all for None, else the number or the
    percentage of `size` (rounded down), never below 1 nor above the stage."""
    size = max(1, size)
    if value is None:
        return size
    if isinstance(value, str) and value.endswith("%"):
        count = size * int(value[:-1]) // 100
    else:
        count = int(value)
    return max(1, min(size, count))


def _selects(stage: RolloutStage, cluster: Cluster) -> bool:
    return targets_match(Targets(cluster_ids=stage.cluster_ids, selector=stage.selector), cluster)


def assign_stages(rollout: RolloutSpec | None, clusters: Sequence[Cluster]) -> list[Stage]:
    """Each cluster in the first stage that selects it, the rest in the implicit last
    stage. Without `rollout`, one implicit stage of every cluster. Stages that select no
    cluster stay (with no clusters: they succeed at once, their pause still applies); the
    implicit stage exists only when some cluster falls into it."""
    remaining = sorted(clusters, key=lambda c: c.id)
    stages: list[Stage] = []
    for spec in rollout.stages if rollout else ():
        mine = [c for c in remaining if _selects(spec, c)]
        remaining = [c for c in remaining if c not in mine]
        stages.append(
            Stage(
                name=spec.name,
                clusters=tuple(c.id for c in mine),
                max_concurrent=resolve_max_concurrent(spec.max_concurrent, len(mine)),
                pause_seconds=spec.pause_seconds,
                approval=spec.pause == "approval",
                checks=merge_checks(rollout.checks if rollout else None, spec.checks),
            )
        )
    if remaining or not stages:
        ids = tuple(c.id for c in remaining)
        checks = merge_checks(rollout.checks, None) if rollout else None
        stages.append(Stage(IMPLICIT_STAGE, ids, max(1, len(ids)), implicit=True, checks=checks))
    return stages


def stage_config(releases: Collection[DesiredRelease]) -> str:
    """A digest of every desired release (where and what) of a stage's clusters: equal
    means the stage's configuration did not change."""
    material = "\n".join(
        sorted(f"{r.key.cluster}/{r.key.namespace}/{r.key.name}={r.config}" for r in releases)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _failures_message(failed: Sequence[str], first_failure: str, limit: int) -> str:
    text = f"{len(failed)} failed clusters exceed maxFailures {limit}"
    return text + (f"; first failure: {first_failure}" if first_failure else "")


def decide(
    stages: Sequence[Stage],
    states: Mapping[str, ClusterState],
    records: Sequence[StageRecord],
    configs: Sequence[str],
    *,
    now: datetime,
    approval: str | None = None,
    max_failures: int = 0,
    suspended: bool = False,
    first_failure: str = "",
    held: Mapping[str, str] | None = None,
) -> Decision:
    """Where the rollout stands, and which stage may run (see the module docstring).

    `records[i]` / `configs[i]`: the remembered record and the current config digest of
    stage i (missing records count as empty). `first_failure` names the first failed
    cluster and why, for the Halted message.
    """
    if not stages:
        return Decision(RolloutState.COMPLETE, "", "no cluster to roll out to", None, ())
    walk = _Walk(stages, states, records, configs, now, approval, dict(held or {}))
    if suspended:
        return walk.verdict(
            RolloutState.SUSPENDED,
            0,
            "spec.suspend is true: no helm writes until it is false",
            waiting="suspended",
        )
    failed: list[str] = []  # failed clusters of the stages walked so far
    for index, stage in enumerate(stages):
        failed += [c for c in stage.clusters if states.get(c) is ClusterState.FAILED]
        if len(failed) > max_failures:
            return walk.verdict(
                RolloutState.HALTED,
                index,
                _failures_message(failed, first_failure, max_failures),
                waiting=f"rollout halted at stage {stage.name}",
            )
        verdict = walk.unfinished(index, max_failures) or walk.succeeded(index)
        if verdict is not None:
            return verdict
    return walk.verdict(
        RolloutState.COMPLETE, len(stages) - 1, f"all {len(stages)} stages rolled out"
    )


@dataclass
class _Walk:
    """`decide`'s walk over the stages in order: the records it settled so far (`new`)."""

    stages: Sequence[Stage]
    states: Mapping[str, ClusterState]
    records: Sequence[StageRecord]
    configs: Sequence[str]
    now: datetime
    approval: str | None
    held: dict[str, str]
    new: list[StageRecord] = field(default_factory=list)
    approved_now: str | None = None

    @property
    def done(self) -> tuple[int, ...]:
        return tuple(
            sum(self.states.get(c) is ClusterState.DONE for c in s.clusters) for s in self.stages
        )

    def verdict(
        self,
        state: RolloutState,
        index: int,
        message: str,
        *,
        active: int | None = None,
        wake_at: datetime | None = None,
        waiting: str = "",
    ) -> Decision:
        kept = [*self.new, *_kept(self.records, self.configs, len(self.new), len(self.stages))]
        return Decision(
            state,
            self.stages[index].name,
            message,
            active,
            tuple(kept),
            wake_at=wake_at,
            approved=self.approved_now,
            waiting=waiting,
            done=self.done,
        )

    def unfinished(self, index: int, max_failures: int) -> Decision | None:
        """Progressing while stage `index` has a cluster not looked at (it may run now)
        or not deployed; None when all its clusters are deployed."""
        stage, done = self.stages[index], self.done[index]
        waiting = f"waiting for stage {stage.name}"
        if any(c not in self.states for c in stage.clusters):
            message = f"stage {stage.name}: rolling out to {len(stage.clusters)} clusters"
            return self.verdict(
                RolloutState.PROGRESSING, index, message, active=index, waiting=waiting
            )
        if done == len(stage.clusters):
            return None
        stage_failed = [c for c in stage.clusters if self.states[c] is ClusterState.FAILED]
        held = [c for c in stage.clusters if c in self.held]
        why = (
            f"{len(stage_failed)} failed (within maxFailures {max_failures})"
            if stage_failed
            else f"{len(held)} held by checks, first {held[0]}: {self.held[held[0]]}"
            if held
            else f"{len(stage.clusters) - done} not deployed yet"
        )
        self.new.append(_record_at(self.records, self.configs, index))
        message = f"stage {stage.name}: {done} of {len(stage.clusters)} clusters deployed, {why}"
        return self.verdict(RolloutState.PROGRESSING, index, message, waiting=waiting)

    def succeeded(self, index: int) -> Decision | None:
        """Stage `index` succeeded: its record settled (at this config since the
        remembered time, or since now); its soak pause or approval gate may hold the next
        stage. None: the walk goes on (or ends, after the last stage)."""
        stage, now = self.stages[index], self.now
        record = _record_at(self.records, self.configs, index)
        record = replace(
            record, config=self.configs[index], succeeded_at=record.succeeded_at or now
        )
        if stage.approval and not record.approved and self.approval == stage.name:
            record = replace(record, approved=True)
            self.approved_now = stage.name
        self.new.append(record)
        if index == len(self.stages) - 1:
            return None
        if stage.pause_seconds:
            assert record.succeeded_at is not None
            until = record.succeeded_at + timedelta(seconds=stage.pause_seconds)
            if now < until:
                return self.verdict(
                    RolloutState.PAUSED,
                    index,
                    f"stage {stage.name} succeeded; soaking {(until - now).total_seconds():.0f}s "
                    f"more before stage {self.stages[index + 1].name}",
                    wake_at=until,
                    waiting=f"waiting for the soak pause after stage {stage.name}",
                )
        if stage.approval and not record.approved:
            return self.verdict(
                RolloutState.WAITING_FOR_APPROVAL,
                index,
                f"stage {stage.name} succeeded; waiting for approval: "
                f"kubectl annotate stack <name> {APPROVE_ANNOTATION}={stage.name}",
                waiting=f"waiting for approval of stage {stage.name}",
            )
        return None


def _record_at(records: Sequence[StageRecord], configs: Sequence[str], index: int) -> StageRecord:
    """The remembered record of stage `index` while its config is the same, else empty."""
    record = records[index] if index < len(records) else StageRecord()
    if record.config is not None and record.config != configs[index]:
        return StageRecord()
    return record


def _kept(
    records: Sequence[StageRecord], configs: Sequence[str], start: int, count: int
) -> list[StageRecord]:
    """Records of the stages the decision did not reach: kept while their config holds."""
    return [_record_at(records, configs, i) for i in range(start, count)]
