"""Prometheus metrics of the operator, served on HERD_METRICS_PORT.

Updated by `herd.operator.keeper` from rollout progress and by the status writer;
names are stable (dashboards and alerts use them). `sample_loop_lag` measures the event
loop's lag (`herd_event_loop_lag_seconds`), for the whole process. Label values that
tenants choose (chart names) are bounded: `MAX_SERIES` pairs, then `_other`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from herd.plan.results import ReleaseResult, State

OPERATIONS = Counter(
    "herd_operations_total",
    "Helm operations by cluster, chart, operation and result.",
    ["cluster", "chart", "operation", "result"],
)
HELM_SECONDS = Histogram(
    "herd_helm_duration_seconds",
    "Duration of helm install/upgrade/uninstall operations.",
    ["operation"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
STATUS_WRITE_FAILURES = Counter(
    "herd_status_write_failures_total",
    "Stack status writes that failed and were retried (management API trouble).",
)
STACKS = Gauge("herd_stacks", "Stacks by phase.", ["phase"])
DRIFTED = Gauge(
    "herd_drifted_objects", "Drifted objects per Stack (spec.drift).", ["namespace", "stack"]
)
DRIFT_CORRECTIONS = Counter(
    "herd_drift_corrections_total", "Drifted objects Herd corrected.", ["cluster", "chart"]
)
RELEASES = Gauge("herd_releases", "Releases by state, all Stacks together.", ["state"])

_FINAL = (State.DEPLOYED, State.FAILED, State.UNINSTALLED)


LOOP_LAG = Histogram(
    "herd_event_loop_lag_seconds",
    "How late the event loop ran a timer (a stall blocks Lease renewal and every Stack).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LOOP_LAG_MAX = Gauge("herd_event_loop_lag_max_seconds", "The largest event-loop lag seen.")
LAG_INTERVAL = 0.1  # the sampler sleeps this long; any oversleep is lag
STALL_SECONDS = 0.25  # a lag beyond this is logged
logger = logging.getLogger(__name__)

MAX_SERIES = 2000  # (cluster, chart) pairs with their own series; later ones share OVERFLOW
OVERFLOW = "_other"
_LABEL_CHARS = 63


class _Labels:
    """Bounded label values: chart names are tenant text, and clusters × charts grows with
    every tenant. The first `MAX_SERIES` pairs keep their names; later ones are counted
    under `OVERFLOW` (the total stays right), and every value is cut to 63 characters."""

    def __init__(self, limit: int = MAX_SERIES) -> None:
        self._limit = limit
        self._seen: set[tuple[str, str]] = set()

    def pair(self, cluster: str, chart: str) -> tuple[str, str]:
        key = (cluster[:_LABEL_CHARS], chart[:_LABEL_CHARS])
        if key in self._seen:
            return key
        if len(self._seen) < self._limit:
            self._seen.add(key)
            return key
        return (OVERFLOW, OVERFLOW)


_LABELS = _Labels()


def record(result: ReleaseResult) -> None:
    """Count a finished helm operation (results that did nothing are not operations),
    and a drift check's corrections."""
    if result.drift is not None and result.drift.corrected:
        DRIFT_CORRECTIONS.labels(*_LABELS.pair(result.key.cluster, result.chart)).inc(
            result.drift.corrected
        )
    if result.action is None or result.state not in _FINAL or result.started is None:
        return
    operation = result.action.value
    outcome = "success" if result.state is not State.FAILED else "failure"
    cluster, chart = _LABELS.pair(result.key.cluster, result.chart)
    OPERATIONS.labels(cluster, chart, operation, outcome).inc()
    if result.finished is not None:
        HELM_SECONDS.labels(operation).observe((result.finished - result.started).total_seconds())


class Fleet:
    """Phases and release states per Stack, summed into the gauges."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._states: dict[tuple[str, str], Tally[str]] = {}

    def set(
        self, stack: tuple[str, str], phase: str, states: dict[str, int], drifted: int = 0
    ) -> None:
        self._phases[stack] = phase
        self._states[stack] = Tally(states)
        DRIFTED.labels(*stack).set(drifted)
        self._publish()

    def forget(self, stack: tuple[str, str]) -> None:
        self._phases.pop(stack, None)
        self._states.pop(stack, None)
        with contextlib.suppress(KeyError):  # never set
            DRIFTED.remove(*stack)
        self._publish()

    def _publish(self) -> None:
        STACKS.clear()
        for phase, count in Tally(self._phases.values()).items():
            STACKS.labels(phase).set(count)
        RELEASES.clear()
        total: Tally[str] = Tally()
        for states in self._states.values():
            total.update(states)
        for state, count in total.items():
            RELEASES.labels(state).set(count)


def serve(port: int) -> None:
    if port:
        start_http_server(port)


async def sample_loop_lag(interval: float = LAG_INTERVAL) -> None:
    """Sleep `interval` again and again, recording how late each wake-up was (runs until
    cancelled; the operator starts it for the whole process, leader and standby)."""
    worst = 0.0
    while True:
        started = time.monotonic()
        await asyncio.sleep(interval)
        lag = max(0.0, time.monotonic() - started - interval)
        LOOP_LAG.observe(lag)
        if lag > STALL_SECONDS:  # something blocked the loop: say when, to find what
            logger.warning("Event loop stalled for %.2fs", lag)
        if lag > worst:
            worst = lag
            LOOP_LAG_MAX.set(lag)
