"""Retry decisions: exponential delay with jitter, capped; per-cluster backoff."""

from __future__ import annotations

import pytest

from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.plan.retry import Backoff, next_delay


@pytest.mark.parametrize(
    ("attempt", "rand", "base", "cap", "delay"),
    [
        (0, 0.5, 2.0, 300.0, 0.0),  # nothing failed yet
        (1, 0.0, 2.0, 300.0, 1.0),  # half the ceiling at least
        (1, 1.0, 2.0, 300.0, 2.0),  # the ceiling at most
        (2, 0.0, 2.0, 300.0, 2.0),
        (3, 0.5, 2.0, 300.0, 6.0),
        (8, 1.0, 2.0, 300.0, 256.0),
        (9, 1.0, 2.0, 300.0, 300.0),  # capped
        (9, 0.0, 2.0, 300.0, 150.0),
        (10_000, 0.99, 2.0, 300.0, 298.5),  # no overflow, still capped
        (1, 7.0, 30.0, 300.0, 30.0),  # a bad draw is clamped
        (4, 0.0, 30.0, 60.0, 30.0),
    ],
)
def test_next_delay(attempt: int, rand: float, base: float, cap: float, delay: float) -> None:
    assert next_delay(attempt, rand=rand, base=base, cap=cap) == pytest.approx(delay)


def test_a_dead_cluster_is_deferred_until_due_and_healthy_ones_never() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    assert backoff.deferred(0.0) == {} and backoff.next_due(0.0) is None
    assert backoff.failed("dead", now=100.0, rand=1.0) == 2.0
    assert set(backoff.deferred(101.0)) == {"dead"}
    assert backoff.next_due(101.0) == pytest.approx(1.0)
    assert backoff.deferred(102.0) == {}  # due: contacted again
    assert backoff.failed("dead", now=102.0, rand=1.0) == 4.0
    assert backoff.failed("dead", now=106.0, rand=1.0) == 8.0
    assert backoff.attempts("dead") == 3 and backoff.attempts("alive") == 0
    backoff.succeeded("dead")
    assert backoff.deferred(106.0) == {} and backoff.next_due(106.0) is None


def test_backoff_grows_to_the_cap_and_forgets_departed_clusters() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    for _ in range(20):
        delay = backoff.failed("dead", now=0.0, rand=1.0)
    assert delay == 300.0
    backoff.failed("other", now=0.0, rand=0.0)
    backoff.forget({"other"})
    assert backoff.attempts("dead") == 0 and backoff.attempts("other") == 1


def test_a_new_generation_clears_every_backoff() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    backoff.renew(1)
    backoff.failed("dead", now=0.0, rand=1.0)
    backoff.renew(1)  # the same spec: the backoff stays
    assert set(backoff.deferred(1.0)) == {"dead"}
    backoff.renew(2)
    assert backoff.deferred(1.0) == {} and backoff.attempts("dead") == 0


def _row(cluster: str, chart: str, state: State, message: str = "") -> ReleaseResult:
    return ReleaseResult(ReleaseKey(cluster, "ns", chart), chart, state, message=message)


def test_a_deferred_cluster_keeps_its_rows_and_their_cause() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    rows = [
        _row("a", "db", State.FAILED, "failed to fetch http://x/index.yaml: connection refused"),
        _row("a", "ui", State.DEPLOYED),
        _row("b", "db", State.DEPLOYED),  # another cluster's: not kept for "a"
    ]
    backoff.failed("a", now=0.0, rand=1.0, rows=rows)
    backoff.failed("gone", now=0.0, rand=1.0, why="dial tcp: connection refused")
    deferred = backoff.deferred(0.5)
    a = deferred["a"]
    assert a.why is None and [r.chart for r in a.rows] == ["db", "ui"]
    assert a.row(rows[0]).message == f"retrying in 2s: {rows[0].message}"
    assert a.row(rows[0]).state is State.FAILED
    assert a.row(rows[1]) == rows[1]  # not failed: repeated as it was
    assert a.message == f"retrying in 2s: {rows[0].message}"
    assert deferred["gone"].message == "retrying in 2s: dial tcp: connection refused"


def test_a_retry_named_by_its_wall_clock_time_reads_the_same_on_every_pass() -> None:
    """A countdown would change the row (and the status, and an Event) on each pass; the
    retry's wall-clock time does not."""
    backoff = Backoff(base=2.0, cap=300.0)
    wall = 1_764_652_980.2  # 2025-12-02T05:23:00.2Z
    backoff.failed("gone", now=100.0, rand=1.0, why="dial tcp: refused", wall=wall)
    early, late = backoff.deferred(100.1), backoff.deferred(101.9)
    assert early["gone"].message == late["gone"].message
    assert early["gone"].message == "retrying at 05:23:03Z: dial tcp: refused"
    assert early["gone"].due_in != late["gone"].due_in  # the clock did move
