"""One status pipeline: what a pass produced and what was observed → the Stack's status. Pure.

Every status the operator writes is built by `compose(StatusInputs)`, once per write:

- `Kind.PROGRESS`: a pass in flight (`herd.status.build.stack_status`, phase Deploying,
  the live stage of a staged rollout);
- `Kind.FINAL`: a pass's end: rows and the release record; with the add-on probe's
  `Observation` (`herd.status.facts`), the add-on sections, conditions and row fields
  and the GPU facts (`herd.status.addons`); with the staged decision's `status.rollout`,
  the phase and conditions of where the rollout stands (`herd.status.rollout`);
- `Kind.CHECKS`: a pass in flight whose soak's checks changed where the rollout stands
  (`previous`: the status last built; `herd.status.rollout.with_checks`) or read a new
  NeuVector scan (`observed.scans`, by cluster, over the last probe's: `status.security`,
  its condition and those clusters' rows' `securityScan`, of `rows.targets`:
  `herd.status.addons.with_scans`);
- `Kind.DRY_RUN`: `spec.mode: DryRun`, what Apply would do (`herd.status.dryrun`);
- `Kind.FAILED`: the pass could not run (an invalid spec, an error); the previous status
  is kept with the message;
- `Kind.DELETING`: a deletion that waits, with its `Deleting` condition.

Until the probe has looked (`observed` None), the add-on conditions and row fields of the
previous status are carried over, so no write blanks what the last pass found.

Callers: the operator's keeper and teardown (`herd.operator`); the CLI renders the same
parts (`herd.status.build.phase_of`, `summary`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from herd.api.status import AdmissionStatus, RolloutStatus, SkippedCluster, StackStatus
from herd.plan.placement import PlacementDecision
from herd.plan.results import ReleaseResult
from herd.status import dryrun
from herd.status.addons import PassResult, carry_over, enrich, with_scans
from herd.status.build import (
    DEFAULT_MAX_ROWS,
    Phase,
    deleting_status,
    failed_status,
    stack_status,
)
from herd.status.drift import with_drift
from herd.status.facts import Observation
from herd.status.placement import with_placement
from herd.status.rollout import with_checks, with_rollout


class Kind(enum.Enum):
    PROGRESS = "progress"
    CHECKS = "checks"
    FINAL = "final"
    DRY_RUN = "dry-run"
    FAILED = "failed"
    DELETING = "deleting"


class EngineResult(PassResult, Protocol):
    """The parts of `herd.engine.protocols.StackResult` the rows are made of."""

    @property
    def skipped(self) -> Sequence[SkippedCluster]: ...

    @property
    def chart_count(self) -> int: ...

    @property
    def placement(self) -> PlacementDecision | None: ...

    @property
    def admission(self) -> AdmissionStatus | None: ...


@dataclass(frozen=True)
class Rows:
    """What the rows and counts are made of: release results, targets, skipped clusters."""

    releases: Sequence[ReleaseResult] = ()
    targets: Sequence[str] = ()
    skipped: Sequence[SkippedCluster] = ()
    chart_count: int = 0
    cluster_count: int | None = None  # None: count `targets`
    placement: PlacementDecision | None = None  # the pass's pickN decision
    admission: AdmissionStatus | None = None  # the pass's security.enforce rule

    @classmethod
    def of(cls, result: EngineResult) -> Rows:
        return cls(
            result.releases,
            [c.id for c in result.targets],
            result.skipped,
            result.chart_count,
            placement=result.placement,
            admission=result.admission,
        )


@dataclass(frozen=True)
class StatusInputs:
    """Everything one status write is built from (see the module for each `kind`)."""

    kind: Kind
    generation: int | None
    now: datetime
    previous: StackStatus | None = None
    reconcile_at: str | None = None
    max_rows: int = DEFAULT_MAX_ROWS
    rows: Rows = Rows()
    record: Sequence[str] | None = None  # status.releaseClusters; None keeps the previous
    rollout: RolloutStatus | None = None  # the staged decision's (PROGRESS: the live stage)
    result: PassResult | None = None  # FINAL: the engine's pass, which `observed` is of
    observed: Observation | None = None  # FINAL: the add-on probe's facts; CHECKS: scans read
    message: str = ""  # FAILED, DELETING
    phase: str = Phase.FAILED  # FAILED: the phase shown (an error keeps the last one)
    reason: str = ""  # DELETING: the condition's reason


def compose(inputs: StatusInputs) -> StackStatus:
    """The Stack's status for one write."""
    previous = inputs.previous
    if inputs.kind is Kind.FAILED:
        return failed_status(
            inputs.message, inputs.generation, inputs.now, previous, phase=inputs.phase
        )
    if inputs.kind is Kind.DELETING:
        return deleting_status(
            inputs.reason, inputs.message, inputs.generation, inputs.now, previous
        )
    if inputs.kind is Kind.CHECKS:
        return _checked(inputs)
    status = carry_over(_releases(inputs), previous)
    if inputs.kind in (Kind.PROGRESS, Kind.DRY_RUN):
        return status
    observed, result = inputs.observed, inputs.result
    if observed is not None and result is not None:
        status = enrich(
            status,
            result,
            observed.scans,
            observed.agents,
            fail_on=observed.fail_on,
            previous=previous,
            now=inputs.now,
            gpus=observed.gpus,
            release_gpus=observed.release_gpus,
            insights=observed.insights,
        )
    if inputs.rollout is not None:
        status = with_rollout(status, inputs.rollout, inputs.now)
    return status


def _checked(inputs: StatusInputs) -> StackStatus:
    """`previous` with where the rollout stands after a soak's checks spoke, and the
    security summary of the scans its security check read (`observed`, over `rows.targets`)."""
    status = inputs.previous or StackStatus()
    if inputs.rollout is not None:
        status = with_checks(status, inputs.rollout, inputs.now)
    observed = inputs.observed
    if observed is not None and observed.scans:
        status = with_scans(
            status, inputs.rows.targets, observed.scans, fail_on=observed.fail_on, now=inputs.now
        )
    return status


def _releases(inputs: StatusInputs) -> StackStatus:
    """The release rows, phase, message and conditions (in progress: the live stage; a
    dry run: what Apply would do, `herd.status.dryrun`)."""
    rows, kind = inputs.rows, inputs.kind
    status = stack_status(
        rows.releases,
        targets=rows.targets,
        skipped=rows.skipped,
        chart_count=rows.chart_count,
        generation=inputs.generation,
        now=inputs.now,
        previous=inputs.previous,
        max_rows=inputs.max_rows,
        phase=_PHASES.get(kind),
        release_clusters=inputs.record,
        reconcile_at=inputs.reconcile_at,
        cluster_count=rows.cluster_count,
    )
    if kind is Kind.DRY_RUN:  # what would be picked shows as `placement`, as in Apply
        status = dryrun.worded(status, rows.releases, rows.skipped, inputs.now, inputs.previous)
        return with_placement(status, rows.placement, inputs.previous, inputs.now)
    status = with_drift(status, rows.releases, inputs.now, inputs.previous, inputs.generation)
    # A final write without a decision is of a Stack without pickN: its section goes.
    status = with_placement(
        status, rows.placement, inputs.previous, inputs.now, wanted=kind is not Kind.FINAL
    )
    # The rule of the pass; a write in flight keeps the last one.
    kept = inputs.previous.admission if inputs.previous and kind is not Kind.FINAL else None
    status = status.model_copy(update={"admission": rows.admission or kept})
    if kind is Kind.PROGRESS and inputs.rollout is not None:
        status = status.model_copy(update={"rollout": inputs.rollout})
    return status


# The phase a write forces; the others take it from the rows.
_PHASES = {Kind.PROGRESS: Phase.DEPLOYING, Kind.DRY_RUN: dryrun.DRY_RUN}
