"""Prometheus metrics of the operator, served on HERD_METRICS_PORT.

Updated by `herd.operator.keeper` from rollout progress and by the status writer;
names are stable (dashboards and alerts use them).
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from herd.results import ReleaseResult, State

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
RELEASES = Gauge("herd_releases", "Releases by state, all Stacks together.", ["state"])

_FINAL = (State.DEPLOYED, State.FAILED, State.UNINSTALLED)


def record(result: ReleaseResult) -> None:
    """Count a finished helm operation (results that did nothing are not operations)."""
    if result.action is None or result.state not in _FINAL or result.started is None:
        return
    operation = result.action.value
    outcome = "success" if result.state is not State.FAILED else "failure"
    OPERATIONS.labels(result.key.cluster, result.chart, operation, outcome).inc()
    if result.finished is not None:
        HELM_SECONDS.labels(operation).observe((result.finished - result.started).total_seconds())


class Fleet:
    """Phases and release states per Stack, summed into the gauges."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._states: dict[tuple[str, str], Tally[str]] = {}

    def set(self, stack: tuple[str, str], phase: str, states: dict[str, int]) -> None:
        self._phases[stack] = phase
        self._states[stack] = Tally(states)
        self._publish()

    def forget(self, stack: tuple[str, str]) -> None:
        self._phases.pop(stack, None)
        self._states.pop(stack, None)
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
