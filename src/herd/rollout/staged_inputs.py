"""What a staged pass (`herd.rollout.staged`) is given and what it gives back.

`StageInputs`: the persisted `status.rollout`, the approval, `--stage`, the callbacks
through which the pass's decisions and its soak's checks reach the status while it runs
(`ChecksReport`), and the checks' probe. `StagedOutcome`: where the rollout stands after
the pass, and when to look again.

Callers: `herd.rollout.staged`, the engine (`herd.engine`), the operator's keeper and the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from herd.api.status import RolloutStatus
from herd.plan.lastgood import Record
from herd.plan.results import ReleaseResult
from herd.plan.results import now as _now
from herd.plan.stages import Decision, Stage
from herd.rollout.checks import ClusterProbe
from herd.rollout.staged_rollback import RollbackInputs
from herd.status.facts import ClusterScan

HOLD_RECHECK = 30.0  # seconds until a pass looks again at a cluster a check holds


@dataclass(frozen=True)
class ChecksReport:
    """What a soak's checks say now: where the rollout stands, and the newest NeuVector
    scan the security check read on each cluster in this pass (`scans`, for
    `status.security`), of the pass's target clusters (`clusters`)."""

    rollout: RolloutStatus
    scans: Mapping[str, ClusterScan] = field(default_factory=dict)
    clusters: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageInputs:
    """What a staged pass needs besides the plan: the persisted `status.rollout`, the
    approval annotation's value, `only` one stage, and callbacks: `interrupted` (True
    once the spec changed: no further stage starts), `on_stage` (each decision),
    `on_checks` (a soak's checks changed where the rollout stands or what the security
    check read: the soak's start, a hold appearing or clearing, a failure, a new scan;
    the pass goes on, so its status may show it now), and `rollback` (the engine's: the
    last good record and the rollback executor)."""

    previous: RolloutStatus | None = None
    approval: str | None = None
    only: str | None = None
    interrupted: Callable[[], bool] | None = None
    on_stage: Callable[[RolloutStatus], None] | None = None
    on_checks: Callable[[ChecksReport], None] | None = None
    clock: Callable[[], datetime] = _now
    rollback: RollbackInputs | None = None
    probe: ClusterProbe | None = None  # what the stages' checks ask (None: checks hold)


@dataclass
class StagedOutcome:
    stages: list[Stage]
    decision: Decision
    status: RolloutStatus
    peaks: dict[str, int] = field(default_factory=dict)  # stage -> most clusters in flight
    interrupted: bool = False
    rollback: list[ReleaseResult] = field(default_factory=list)  # rows of this pass's rollback
    good: Record | None = None  # the last good revisions after the pass (None: unchanged)
    held: bool = False  # a check holds a cluster back: look again soon

    @property
    def wake_seconds(self) -> float | None:
        """Seconds until a soak pause ends, or until a held check is evaluated again (the
        next pass is due then)."""
        waits = [HOLD_RECHECK] if self.held else []
        if self.decision.wake_at is not None:
            waits.append(max(0.0, (self.decision.wake_at - _now()).total_seconds()))
        return min(waits) if waits else None
