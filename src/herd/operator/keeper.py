"""One Stack's keeper: its reconcile loop, one pass at a time, and what a pass remembers.

Created by `herd.operator.stack.ManagedStack.keep` (run by the kopf daemon of
`herd.operator.handlers`) for each Stack. A pass parses the Stack, asks the engine to
converge it, and hands status to the Stack's `StatusWriter` (which writes apart from helm,
so a management API outage only delays status); every status it writes is built by
`herd.status.pipeline.compose`. Between passes the keeper waits for the resync interval,
the earliest cluster retry, or a signal (spec change, inventory change). A spec change
during a rollout is handled by finishing the rollout, then reconciling again with the new
spec ("finish then redo": helm is never interrupted half-way by an edit).

What a pass decides from lives on the Stack's status, flushed before the next pass:

- `releaseClusters`: clusters that hold or may hold its releases (`previous_targets`),
  so a cluster that left the selector while down is cleaned up when it returns;
- rows' `failedConfig`: permanent failures, passed as `held` so a resync makes no new
  helm revision, until the spec, chart or values change or `herd.suse.com/reconcile-at`
  gets a new value;
- in memory only: per-cluster backoff (`herd.plan.retry.Backoff`): a cluster that did not
  answer is left alone (`defer`) until it is due, and the next pass is set for then.

Every exception of a pass ends as the Stack's status message; the loop never dies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from herd.api import StackStatus, parse_stack
from herd.api.v1 import Stack
from herd.engine.protocols import StackResult
from herd.errors import SpecError, TransientError, describe
from herd.names import APPROVE_ANNOTATION, RECONCILE_AT
from herd.operator.events import Events, Logger, StackEvents, log_placement
from herd.operator.progress import Progress
from herd.operator.runtime import Runtime
from herd.operator.statuswriter import Gone, StatusWriter
from herd.plan.releases import ReleaseKey
from herd.plan.results import State, now
from herd.plan.retry import Backoff, Deferral, jitter, next_delay
from herd.plan.tenancy import Grants
from herd.plan.values import follows_facts
from herd.rollout.staged import StageInputs
from herd.status import dryrun
from herd.status.build import Phase, release_record
from herd.status.facts import ClusterScan
from herd.status.pipeline import Kind, Rows, StatusInputs, compose
from herd.status.placement import remembered

STATUS_INTERVAL = 1.0
WRITE_BACKOFF_MAX = 5.0  # status lags a management API outage by at most this much


def held_releases(
    previous: StackStatus | None, generation: int | None, reconcile_at: str | None
) -> dict[ReleaseKey, str]:
    """Releases whose last attempt failed permanently with the config digest given: not
    retried while the spec generation and the reconcile-at annotation stay the same."""
    if previous is None or previous.observed_generation != generation:
        return {}
    if previous.reconcile_at != reconcile_at:
        return {}
    return {
        ReleaseKey(r.cluster_id, r.namespace, r.release_name): r.failed_config
        for r in previous.deployments
        if r.failed_config
    }


def previous_targets(previous: StackStatus | None) -> set[str] | None:
    """Clusters that may hold the Stack's releases; None (no status, or a record cut at
    its bound) makes the engine check every cluster."""
    if previous is None or previous.release_cluster_count > len(previous.release_clusters):
        return None
    return (
        set(previous.release_clusters)
        | set(previous.target_clusters)
        | {s.cluster_id for s in previous.skipped_clusters}
        | {r.cluster_id for r in previous.deployments}
    )


def parse_status(body: Any) -> StackStatus | None:
    raw = body.get("status") or {}
    if not raw.get("phase"):
        return None
    try:
        return StackStatus.model_validate(dict(raw))
    except ValueError:
        return None


class Keeper:
    def __init__(
        self,
        runtime: Runtime,
        body: Any,
        logger: Logger,
        events: Events | None,
        *,
        on_approval: Callable[[], None] | None = None,
    ) -> None:
        meta = body["metadata"]
        self.key = (meta["namespace"], meta["name"])
        self._runtime = runtime
        self._config = runtime.config
        self._logger = logger
        self._on_approval = on_approval
        self.events = StackEvents(events, window=self._config.resync_seconds)
        self.backoff = Backoff(
            base=self._config.retry_seconds, cap=self._config.backoff_max_seconds
        )
        self.writer = StatusWriter(
            lambda status: runtime.patch_status(self.key, status),
            logger=logger,
            written=parse_status(body),
            interval=STATUS_INTERVAL,
            backoff_max=min(WRITE_BACKOFF_MAX, self._config.backoff_max_seconds),
        )
        self._failures = 0  # passes in a row that ended in an error
        self._grants: Grants | None = None  # what the last pass was granted
        self._scans: dict[str, ClusterScan] = {}  # NeuVector's, as the last pass's probe saw

    async def reconcile(self, body: Any) -> float:
        """One pass; returns how long to wait before the next one."""
        meta = body["metadata"]
        generation = meta.get("generation")
        reconcile_at = (meta.get("annotations") or {}).get(RECONCILE_AT)
        previous = self.writer.written
        try:
            stack = parse_stack(dict(body))
            # A relabel may change a templated value, or which clusters a grant covers.
            facts = follows_facts(stack.spec) or self._runtime.bounded(stack.namespace)
            self._runtime.index.set(self.key, stack.spec.targets, facts=facts)
            annotations = meta.get("annotations") or {}
            staging = StageInputs(
                previous=previous.rollout if previous else None,
                approval=annotations.get(APPROVE_ANNOTATION),
                # kopf's body is a live view: a new generation stops further stages.
                interrupted=lambda: body["metadata"].get("generation") != generation,
            )
            delay = await self._apply(stack, previous, generation, reconcile_at, staging)
            self._failures = 0
            return delay
        except SpecError as error:
            self._logger.error("Invalid Stack, nothing deployed or changed: %s", error)
            self.events.warning("InvalidSpec", f"Nothing deployed or changed: {error}")
            status = compose(
                StatusInputs(Kind.FAILED, generation, now(), previous, message=str(error))
            )
            await self.writer.flush(lambda: status)
            self._runtime.fleet.set(self.key, Phase.FAILED, {})
            return self._config.resync_seconds
        except (Gone, asyncio.CancelledError):
            raise
        except Exception as error:
            self._failures += 1
            delay = next_delay(
                self._failures,
                rand=jitter(),
                base=self._config.retry_seconds,
                cap=self._config.backoff_max_seconds,
            )
            if isinstance(error, TransientError):
                text = f"{error}; retrying in {delay:.0f}s"
                self._logger.warning("%s", text)
            else:  # a bug or an unforeseen answer: it still ends as the Stack's status
                text = f"Reconcile failed ({describe(error)}); retrying in {delay:.0f}s"
                self._logger.exception("%s", text)
            phase = previous.phase if previous else Phase.PENDING
            status = compose(
                StatusInputs(Kind.FAILED, generation, now(), previous, message=text, phase=phase)
            )
            self.writer.offer(lambda: status)
            return delay

    async def _apply(
        self,
        stack: Stack,
        previous: StackStatus | None,
        generation: int | None,
        reconcile_at: str | None,
        staging: StageInputs | None = None,
    ) -> float:
        runtime = self._runtime
        known = {c.id: c for c in runtime.known_clusters()}
        grants = await runtime.grants(stack.namespace)
        # A grant change may make a held failure (a refused render) pass: retry those.
        changed = self._grants is not None and self._grants != grants
        self._grants = grants
        if stack.spec.mode == "DryRun":
            return await self._dry_run(stack, previous, generation, reconcile_at, grants)
        self.backoff.renew(generation)  # a spec change is tried at once everywhere
        deferred = self.backoff.deferred(time.monotonic())
        progress = Progress(
            self.writer,
            self.events,
            self._logger,
            previous,
            generation=generation,
            reconcile_at=reconcile_at,
            max_rows=self._config.max_rows,
            scans=self._scans,
            fail_on=runtime.probe.fail_on,
        )
        placed = remembered(previous)
        result = await runtime.engine.apply(
            stack,
            progress.record,
            previous_targets=previous_targets(previous),
            held={} if changed else held_releases(previous, generation, reconcile_at),
            defer=deferred,
            grants=grants,
            staging=replace(
                staging or StageInputs(), on_stage=progress.stage, on_checks=progress.checks
            ),
            placed=placed,
        )
        log_placement(placed.previous, result.placement, self._logger, self.events)
        record = self._record(result, previous, deferred, known)
        await self._write_final(result, progress, record)
        delay = self._next_pass(result, deferred, record)
        staged = result.rollout
        if staged is None:
            return delay
        if staged.decision.approved:
            if self._on_approval is not None:
                self._on_approval()
            await runtime.clear_approval(self.key, staged.decision.approved, self._logger)
        if staged.wake_seconds is not None:
            delay = max(0.5, min(delay, staged.wake_seconds + 0.5))
        return 0.5 if staged.interrupted else delay

    async def _write_final(
        self, result: StackResult, progress: Progress, record: list[str]
    ) -> None:
        """The pass's outcome goes out now (with the last add-on and GPU facts carried
        over); the probe's reads (manifests, nodes, exporters) only refine it."""
        final = progress.inputs(Kind.FINAL, Rows.of(result), record=record)
        self.writer.offer(lambda: compose(final))
        try:
            observed = await self._runtime.probe.observe(result, self._runtime.inventory)
        except Exception as error:  # add-on reports are extras: the pass's status goes out
            self._logger.warning("Cannot read add-on reports: %s", error)
            observed = None
        if observed is not None:  # what the next pass's soak reads adds to
            self._scans = dict(observed.scans)
        staged = result.rollout
        if staged is not None:
            progress.stage(staged.status)
        status = compose(
            replace(
                final,
                now=now(),
                result=result,
                observed=observed,
                rollout=staged.status if staged is not None else None,
            )
        )
        await self.writer.flush(lambda: status)
        self._runtime.fleet.set(
            self.key, status.phase, status.deployment_counts, status.drifted_objects
        )

    async def _dry_run(
        self,
        stack: Stack,
        previous: StackStatus | None,
        generation: int | None,
        reconcile_at: str | None,
        grants: Grants,
    ) -> float:
        """`spec.mode: DryRun`: the engine's read-only preview as the status (`herd.status.dryrun`);
        no helm write, the release record kept. Checked again at every resync."""
        result, previews = await self._runtime.engine.preview(
            stack,
            previous_targets=previous_targets(previous),
            grants=grants,
            placed=remembered(previous),
        )
        rows = dryrun.preview_rows(result.releases, result.plan, result.unreachable, previews)
        status = compose(
            StatusInputs(
                Kind.DRY_RUN,
                generation,
                now(),
                previous,
                reconcile_at,
                self._config.max_rows,
                Rows(
                    rows,
                    [c.id for c in result.targets],
                    result.skipped,
                    result.chart_count,
                    placement=result.placement,
                ),
            )
        )
        if previous is None or previous.message != status.message:
            self.events.normal(dryrun.DRY_RUN, status.message)
        await self.writer.flush(lambda: status)
        self._runtime.fleet.set(self.key, status.phase, status.deployment_counts)
        return self._config.resync_seconds

    def _record(
        self,
        result: StackResult,
        previous: StackStatus | None,
        deferred: Mapping[str, Deferral],
        known: dict[str, Any],
    ) -> list[str]:
        before = previous.release_clusters if previous else []
        unverified = (
            set(result.unreachable)
            | set(deferred)
            | {s.cluster_id for s in result.skipped}
            | {c for c in before if c not in known or not known[c].ready}
        )
        return release_record(before, result.holding, unverified)

    def _next_pass(
        self, result: StackResult, deferred: Mapping[str, Deferral], record: list[str]
    ) -> float:
        """Back off each cluster that did not answer; the next pass is due at the earliest
        cluster retry, after the retry interval when a cluster was skipped or a release
        waits (on a live actor's helm, or a paused process), else at the resync."""
        clock = time.monotonic()
        failing = set(result.unreachable) | {
            r.key.cluster
            for r in result.releases
            if r.transient and r.state in (State.FAILED, State.UNREACHABLE)
        }
        contacted = {r.key.cluster for r in result.releases} | set(result.unreachable)
        for cluster in contacted.difference(deferred):
            if cluster in failing:
                why = result.unreachable.get(cluster)
                delay = self.backoff.failed(
                    cluster, clock, jitter(), why, result.releases, wall=time.time()
                )
                self._logger.info("Cluster %s: retrying in %.0fs", cluster, delay)
            else:
                self.backoff.succeeded(cluster)
        self.backoff.forget(set(record) | {c.id for c in result.targets})
        delays = [self._config.resync_seconds]
        if result.drift_wait is not None:  # the next release drift check (`spec.drift`)
            delays.append(result.drift_wait)
        due = self.backoff.next_due(time.monotonic())
        if due is not None:
            delays.append(due)
        skipped = {s.cluster_id for s in result.skipped} - result.denied  # not granted: no retry
        # A release waiting on a live actor's helm, or on this process to lead again.
        waiting = any(r.transient and r.state is State.PENDING for r in result.releases)
        if skipped or waiting:
            delays.append(self._config.retry_seconds)
        return max(0.5, min(delays))
