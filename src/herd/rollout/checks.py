"""A stage's health gates, carried out: one round of checks per cluster, and the soak.

`StageChecker.round` evaluates a stage's checks (`herd.plan.checks.StageChecks`) once on
each of the given clusters, concurrently (bounded): readiness (every object of every
deployed release Current), each metric whose interval has come (its query per cluster,
or per release when it names a `{{ .Release.* }}` field), and the security gate. A
failed evaluation is counted (`Tally`); a cluster fails when a check reaches its
`failureLimit` (readiness: the first; before the stage succeeded, an object still coming
up holds the cluster instead, a kstatus Failed one fails it). The security gate holds a
cluster back (a vulnerable or unscanned image), and fails it once an image stays unscanned
past `pendingTimeout`; the NeuVector scan it read is kept in the round's result (`scans`:
`status.security` follows it during a soak). `StageChecker.soak` repeats rounds until the
soak ends, every cluster failed, or the caller's `interrupted` says the spec changed.

What is asked of a cluster goes through `ClusterProbe` (the engine's live one:
`herd.engine.checks.LiveProbe`; the unit tests' fake). A probe raising `TransientError`
for readiness leaves that evaluation uncounted (the cluster could not be read); for a
metric any `HerdError` (unreachable, or a query Prometheus refused) is a failed
evaluation: a gate that cannot be evaluated does not pass.

Callers: `herd.rollout.staged` (after a stage's clusters deployed, and during its pause).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from herd.addons.insights import INSIGHTS
from herd.api.checks import FailOnLevel, MetricCheck
from herd.api.common import duration_seconds
from herd.errors import HerdError, TransientError, describe
from herd.plan.checks import (
    READINESS,
    SECURITY,
    Gate,
    StageChecks,
    Tally,
    Unready,
    clip,
    metric_failure,
    render_query,
    security_gate,
    uses_release,
)
from herd.plan.results import ReleaseResult, State
from herd.plan.results import now as _now
from herd.rollout.target import Target
from herd.status.facts import AGENT, NEUVECTOR, ClusterScan, ImageVerdicts

logger = logging.getLogger(__name__)
_CONCURRENCY = 10
ADDON_CHARTS = frozenset({NEUVECTOR, AGENT, INSIGHTS})  # Herd's charts: no Release metric
COMING_UP = f"check {READINESS}: waiting: "  # a first-round hold that may clear soon


class ClusterProbe(Protocol):
    """What the checks ask of one cluster (`herd.engine.checks.LiveProbe`)."""

    def warm(self) -> None:
        """Start now, without waiting, what a first round of readiness or security checks
        would otherwise wait for (the worker processes that parse manifests)."""
        ...

    async def unready(self, target: Target, releases: Sequence[ReleaseResult]) -> Unready | None:
        """The first object of `releases` not Current, and why; None when all are."""
        ...

    async def metric(self, target: Target, query: str) -> float | None:
        """The query's one value on the cluster's Prometheus (None: no value)."""
        ...

    async def scan(
        self, target: Target, releases: Sequence[ReleaseResult], fail_on: FailOnLevel
    ) -> ImageVerdicts:
        """Images failed at or above `fail_on`, images not scanned yet, and the scan."""
        ...


@dataclass
class RoundResult:
    failed: dict[str, str] = field(default_factory=dict)  # cluster -> why (newly failed)
    held: dict[str, str] = field(default_factory=dict)  # cluster -> why (this round)
    scans: dict[str, ClusterScan] = field(default_factory=dict)  # what the security check read


class StageChecker:
    """The checks of one stage during one pass; `results`: the pass's release results."""

    def __init__(
        self,
        probe: ClusterProbe,
        checks: StageChecks,
        targets: Mapping[str, Target],
        results: Callable[[], Sequence[ReleaseResult]],
        clock: Callable[[], datetime] = _now,
        *,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self._names = names or {}  # cluster id -> name
        self._probe = probe
        self._checks = checks
        self._targets = targets
        self._results = results
        self._clock = clock
        self.tally = Tally()
        self._last: dict[tuple[str, str], datetime] = {}  # (cluster, metric) -> evaluated
        self._slots = asyncio.Semaphore(_CONCURRENCY)
        self._started = clock()
        self._first = False

    async def round(self, clusters: Sequence[str], *, first: bool = False) -> RoundResult:
        """One evaluation on `clusters`. `first` (before the stage may succeed): an object
        still InProgress holds the cluster (it is coming up) instead of failing it."""
        out = RoundResult()
        self._first = first
        live = [c for c in clusters if c in self._targets and c not in self.tally.failed]
        async with asyncio.TaskGroup() as group:
            for cluster in live:
                group.create_task(self._cluster(cluster, out))
        return out

    async def soak(
        self,
        clusters: Sequence[str],
        until: datetime,
        interrupted: Callable[[], bool] | None = None,
        on_round: Callable[[RoundResult], None] | None = None,
    ) -> RoundResult:
        """Rounds every tick until `until`; the failures of every round, the last holds."""
        total = RoundResult()
        tick = self._checks.tick_seconds
        while True:
            left = (until - self._clock()).total_seconds()
            if left <= 0 or (interrupted is not None and interrupted()):
                return total
            await asyncio.sleep(min(tick, left))
            result = await self.round(clusters)
            total.failed |= result.failed
            total.held = result.held
            total.scans |= result.scans
            if on_round is not None:
                on_round(result)
            if all(c in self.tally.failed for c in clusters):
                return total

    async def _cluster(self, cluster: str, out: RoundResult) -> None:
        target = self._targets[cluster]
        releases = [
            r for r in self._results() if r.key.cluster == cluster and r.state is State.DEPLOYED
        ]
        async with self._slots:
            try:
                await self._run_checks(target, releases, out)
            except Exception as error:  # one cluster's fault never cancels the others' round
                logger.exception("Checks of cluster %s did not run", cluster)
                out.held[cluster] = clip(f"checks not run: {describe(error)}")

    async def _run_checks(
        self, target: Target, releases: Sequence[ReleaseResult], out: RoundResult
    ) -> None:
        cluster, checks = target.cluster, self._checks
        if checks.readiness:
            await self._readiness(target, releases, out)
        for metric in checks.metrics:
            if cluster not in self.tally.failed and self._due(cluster, metric):
                await self._metric(target, releases, metric, out)
        if checks.security is not None and cluster not in self.tally.failed:
            await self._security(target, releases, out)

    def _fail(self, cluster: str, check: str, why: str | None, out: RoundResult) -> None:
        before = cluster in self.tally.failed
        failed = self.tally.record(cluster, check, why, self._checks.limit(check))
        if failed is not None and not before:
            out.failed[cluster] = failed
            out.held.pop(cluster, None)

    async def _readiness(
        self, target: Target, releases: Sequence[ReleaseResult], out: RoundResult
    ) -> None:
        try:
            found = await self._probe.unready(target, releases)
        except TransientError as error:  # not read: not counted either way
            logger.info("Readiness of cluster %s not read: %s", target.cluster, describe(error))
            return
        if found is not None and self._first and not found.failed:
            out.held[target.cluster] = clip(COMING_UP + found.why)
            return
        self._fail(target.cluster, READINESS, found.why if found else None, out)

    def _due(self, cluster: str, metric: MetricCheck) -> bool:
        last = self._last.get((cluster, metric.name))
        now = self._clock()
        if last is not None and (now - last).total_seconds() < duration_seconds(metric.interval):
            return False
        self._last[(cluster, metric.name)] = now
        return True

    async def _metric(
        self,
        target: Target,
        releases: Sequence[ReleaseResult],
        metric: MetricCheck,
        out: RoundResult,
    ) -> None:
        cluster = {"Id": target.cluster, "Name": self._names.get(target.cluster, target.cluster)}
        if uses_release(metric.query):
            releases = [
                r
                for r in releases
                if (r.chart in metric.charts if metric.charts else r.chart not in ADDON_CHARTS)
            ]
            queries = [
                (
                    f"release {r.key.namespace}/{r.key.name}",
                    render_query(
                        metric.query,
                        cluster,
                        {"Name": r.key.name, "Namespace": r.key.namespace, "Chart": r.chart},
                    ),
                )
                for r in releases
            ]
        else:
            queries = [("", render_query(metric.query, cluster))]
        why: str | None = None
        for where, query in queries:
            try:
                found = metric_failure(await self._probe.metric(target, query), metric.threshold)
            except HerdError as error:  # unreachable, or a query Prometheus refused
                found = f"cannot evaluate: {describe(error)}"
            if found is not None:
                why = f"{where}: {found}" if where else found
                break
        self._fail(target.cluster, metric.name, why, out)

    async def _security(
        self, target: Target, releases: Sequence[ReleaseResult], out: RoundResult
    ) -> None:
        check = self._checks.security
        assert check is not None
        try:
            read = await self._probe.scan(target, releases, check.fail_on)
        except TransientError as error:  # NeuVector not asked: its verdicts are unknown
            out.held[target.cluster] = clip(f"check security: {describe(error)}")
            return
        if read.scan is not None:
            out.scans[target.cluster] = read.scan
        failed, pending = read.failed, read.pending
        # Unscanned since the release was deployed in this pass, or since this pass began.
        since = min([self._started, *(r.finished for r in releases if r.finished)])
        waited = (self._clock() - since).total_seconds()
        verdict = security_gate(failed, pending, waited, check)
        if verdict.gate is Gate.FAIL:
            self._fail(target.cluster, SECURITY, verdict.reason, out)
        elif verdict.gate is Gate.HOLD:
            out.held[target.cluster] = f"check security: {verdict.reason}"
