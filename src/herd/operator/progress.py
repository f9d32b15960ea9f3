"""A pass in flight, as the Stack's status and Events say it: one `Progress` per pass.

The keeper (`herd.operator.keeper`) hands the engine `record` (each release result),
`stage` (each decision of a staged pass) and `checks` (a soak's checks spoke:
`herd.rollout.staged_inputs.ChecksReport`). Each posts the Events it deserves and offers
the Stack's `StatusWriter` a status built by `herd.status.pipeline.compose`: the pass's
rows (`Kind.PROGRESS`), then what the soak's checks say (`Kind.CHECKS`): where the
rollout stands and, from the NeuVector scans the security check read (over those the
last pass's probe saw), `status.security`. Nothing here awaits: the rollout goes on
whatever the management API does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from herd.api import StackStatus
from herd.api.status import RolloutStatus
from herd.operator import metrics
from herd.operator.events import Logger, StackEvents, log_drift, log_release
from herd.operator.statuswriter import StatusWriter
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State, now
from herd.plan.stages import RolloutState
from herd.rollout.staged_inputs import ChecksReport
from herd.status.facts import ClusterScan, FailOn, Observation
from herd.status.pipeline import Kind, Rows, StatusInputs, compose
from herd.status.rollout import rollout_events


class Progress:
    """Rollout progress → Events, metrics and an offered status, for one pass."""

    def __init__(
        self,
        writer: StatusWriter,
        events: StackEvents,
        logger: Logger,
        previous: StackStatus | None,
        *,
        generation: int | None,
        reconcile_at: str | None,
        max_rows: int,
        scans: Mapping[str, ClusterScan] | None = None,
        fail_on: FailOn = FailOn.CRITICAL,
    ) -> None:
        self._writer = writer
        self._events = events
        self._logger = logger
        self._max_rows = max_rows
        self._previous = previous
        self._generation = generation
        self._reconcile_at = reconcile_at
        self._results: dict[ReleaseKey, ReleaseResult] = {}
        self._active = False
        self._rollout = previous.rollout if previous else None  # the live status.rollout
        self._posted: set[tuple[str, str]] = set()  # rollout Events of this pass
        self._checked: RolloutStatus | None = None  # what a soak's checks said last
        self._known = dict(scans or {})  # the last probe's scans, by cluster
        self._fail_on = fail_on
        self._scanned: ChecksReport | None = None  # the last report with a scan read

    def stage(self, rollout: RolloutStatus) -> None:
        """A staged pass decided again: post the Events it deserves, show the stage."""
        self._post(rollout)
        # While the pass runs, status shows the stage rolling out; where the rollout
        # stops (paused, waiting, halted) shows with the pass's final rows.
        if rollout.state == RolloutState.PROGRESSING:
            self._rollout = rollout
            self._checked = None  # the pass moved on (or a check holds: `checks` says so)
        if self._active:
            self._writer.offer(self._in_progress)

    def checks(self, report: ChecksReport) -> None:
        """A soak's checks changed where the rollout stands or what the security check
        read: the status says so now (the pass goes on as long as the pause)."""
        self._post(report.rollout)
        self._checked = report.rollout
        if report.scans:
            self._scanned = report
        self._writer.offer(self._in_progress)

    def _post(self, rollout: RolloutStatus) -> None:
        """The rollout's Events, against where the last pass left it, each once per pass."""
        baseline = self._previous.rollout if self._previous else None
        for kind, reason, message in rollout_events(baseline, rollout):
            if (reason, message) in self._posted:
                continue
            self._posted.add((reason, message))
            (self._events.warning if kind == "Warning" else self._events.normal)(reason, message)
            self._logger.info("%s: %s", reason, message)

    def record(self, result: ReleaseResult) -> None:
        self._results[result.key] = result
        log_release(result, self._logger, self._events)
        log_drift(result, self._logger, self._events)
        metrics.record(result)
        # A pass that changes nothing writes nothing until its end.
        self._active = self._active or result.state in (State.DEPLOYING, State.UNINSTALLING)
        if self._active:
            self._writer.offer(self._in_progress)

    def _in_progress(self) -> StackStatus:
        """The pass's rows (none written yet: the last status) and its checks' word: where
        the rollout stands while it soaks, the security summary of what they read."""
        status = self._rows() if self._active or self._previous is None else self._previous
        if self._checked is None and self._scanned is None:
            return status
        inputs = StatusInputs(Kind.CHECKS, self._generation, now(), status, rollout=self._checked)
        if self._scanned is not None:
            scans = {**self._known, **self._scanned.scans}
            observed = Observation(scans=scans, fail_on=self._fail_on)
            inputs = replace(inputs, observed=observed, rows=Rows(targets=self._scanned.clusters))
        return compose(inputs)

    def _rows(self) -> StackStatus:
        previous = self._previous
        # Clusters this pass touched join the record at once: a crash mid-pass forgets none.
        touched = {r.key.cluster for r in self._results.values()}
        before = set(previous.release_clusters) if previous else set()
        rows = Rows(
            list(self._results.values()),
            targets=previous.target_clusters if previous else [],
            chart_count=previous.chart_count if previous else 0,
            cluster_count=previous.cluster_count if previous else 0,
        )
        inputs = self.inputs(Kind.PROGRESS, rows, record=sorted(before | touched))
        return compose(replace(inputs, rollout=self._rollout))

    def inputs(self, kind: Kind, rows: Rows, record: list[str]) -> StatusInputs:
        """The status inputs of this pass (its generation, annotations, previous status)."""
        return StatusInputs(
            kind,
            self._generation,
            now(),
            self._previous,
            self._reconcile_at,
            self._max_rows,
            rows,
            record=record,
        )
