"""When to try again: exponential backoff with jitter, capped, per cluster. Pure.

`next_delay` is the one retry decision; `Backoff` remembers, per cluster, how many
passes in a row failed to reach it and when it is due again. Time and randomness are
passed in, so both are table-tested (`tests/test_retry.py`).

Each entry also keeps what the failed pass said about that cluster (`Deferral`): the rows
of a cluster left alone repeat its real cause ("retrying at 05:23:14Z: ... index.yaml:
connection refused"), and only a cluster that did not answer reads Unreachable. The retry is
named by its wall-clock time when the caller gives one, so the message stays the same from
pass to pass (a countdown would change the status, and post an Event, on every pass). A new spec
generation (`renew`) clears every entry: the fixed spec is tried at once everywhere.

Callers: the operator's keeper (`herd.operator.keeper`: clusters in backoff are not
contacted until due, and the Stack's next pass is set at the earliest due time), the
rollout (`herd.rollout.scheduler`: a deferred cluster's rows), its
status writer (`herd.operator.statuswriter`: retrying a failed status write) and its
deletion (`herd.operator.teardown`: a deletion held back by an unreachable cluster).

Permanent failures are not retried on a timer at all: they wait for a change (see
`herd.operator.keeper`, which passes them to the engine as `held`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from herd.plan.results import ReleaseResult, State

DEFAULT_BASE = 2.0
DEFAULT_CAP = 300.0


def jitter() -> float:
    """A draw in [0, 1) for `rand` (spreading retries, not a secret)."""
    return random.random()  # noqa: S311


def next_delay(
    attempt: int, *, rand: float, base: float = DEFAULT_BASE, cap: float = DEFAULT_CAP
) -> float:
    """Seconds to wait after the `attempt`-th failure in a row (1 = the first failure).

    The ceiling doubles from `base` up to `cap`; the delay is drawn in its upper half
    ("equal jitter": `rand` in [0, 1) picks where), so retries of many clusters spread
    out but never come back sooner than half the ceiling.
    """
    if attempt < 1:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return ceiling / 2.0 + ceiling / 2.0 * min(max(rand, 0.0), 1.0)


_FAILED = (State.FAILED, State.UNREACHABLE, State.SKIPPED)


@dataclass(frozen=True)
class Deferral:
    """A cluster left alone this pass: when it is due, and what its failed pass said.

    `why`: the cluster itself did not answer (its rows read Unreachable); else `rows`, its
    releases as that pass left them, say what failed (a chart source, a render...)."""

    due_in: float
    why: str | None = None
    rows: tuple[ReleaseResult, ...] = ()
    at: float | None = None  # the retry's wall-clock time (epoch seconds), when known

    @property
    def retrying(self) -> str:
        if self.at is not None:
            return f"retrying at {time.strftime('%H:%M:%SZ', time.gmtime(math.ceil(self.at)))}"
        return f"retrying in {math.ceil(self.due_in)}s"

    @property
    def message(self) -> str:
        """The cause and the retry, for a cluster-wide message (a stage's failed cluster)."""
        failed = [r.message for r in self.rows if r.state in _FAILED and r.message]
        cause = self.why or (failed[0] if failed else "its last pass failed")
        return f"{self.retrying}: {cause}"

    def row(self, last: ReleaseResult) -> ReleaseResult:
        """`last` (the failed pass's row) repeated; a failure says when it is retried (first:
        a row's message is cut at its end)."""
        if last.state not in _FAILED:
            return last
        return replace(last, message=f"{self.retrying}: {last.message}")


@dataclass
class _Entry:
    attempts: int
    due: float
    why: str | None = None
    rows: tuple[ReleaseResult, ...] = ()
    at: float | None = None


@dataclass
class Backoff:
    """Clusters that failed to answer, and when each may be contacted again."""

    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _generation: int | None = None

    def failed(
        self,
        cluster: str,
        now: float,
        rand: float,
        why: str | None = None,
        rows: Iterable[ReleaseResult] = (),
        *,
        wall: float | None = None,
    ) -> float:
        """Record one more failure of `cluster`; returns the delay chosen. `why`: the
        cluster did not answer; `rows`: the pass's rows (those of `cluster` are kept);
        `wall`: the wall clock at `now`, so that rows can name the retry's time."""
        attempts = self._entries[cluster].attempts + 1 if cluster in self._entries else 1
        delay = next_delay(attempts, rand=rand, base=self.base, cap=self.cap)
        mine = tuple(r for r in rows if r.key.cluster == cluster)
        at = None if wall is None else wall + delay
        self._entries[cluster] = _Entry(attempts, now + delay, why, mine, at)
        return delay

    def renew(self, generation: int | None) -> None:
        """A new spec generation clears every backoff: the change is tried at once."""
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation

    def succeeded(self, cluster: str) -> None:
        self._entries.pop(cluster, None)

    def forget(self, keep: Iterable[str]) -> None:
        """Drop every cluster not in `keep` (no longer relevant to the Stack)."""
        wanted = set(keep)
        for cluster in [c for c in self._entries if c not in wanted]:
            del self._entries[cluster]

    def attempts(self, cluster: str) -> int:
        entry = self._entries.get(cluster)
        return entry.attempts if entry else 0

    def deferred(self, now: float) -> dict[str, Deferral]:
        """Clusters not due yet (the next pass leaves them alone), each with its cause."""
        return {
            c: Deferral(e.due - now, e.why, e.rows, e.at)
            for c, e in self._entries.items()
            if e.due > now
        }

    def next_due(self, now: float) -> float | None:
        """Seconds until the earliest cluster is due (0 if one is due now), None if none."""
        if not self._entries:
            return None
        return max(0.0, min(e.due for e in self._entries.values()) - now)
