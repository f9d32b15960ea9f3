"""Which clusters of a stage may start: a per-stage bound and the failure budget.

An `Admission` is made by `herd.rollout.staged` for the stage that runs, and consulted by
`herd.rollout.scheduler` for each of its clusters, on top of the process-wide `Gates`.
At most `max_concurrent` clusters of the stage are in flight at once; once more clusters
failed than the budget allows, a cluster that has not started yet does not start (it is
only observed, its rows saying why), while clusters in flight finish their helm work.
`peak` is the most clusters ever in flight (figures for tests and benchmarks). Clusters
that had failed before the stage started (`known`: held, in backoff) still run: they
already count against the budget, and running them keeps their failure on their rows.

Callers: `herd.rollout.scheduler`, `herd.rollout.staged`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Admission:
    def __init__(
        self, max_concurrent: int, budget: int, stage: str = "", known: frozenset[str] = frozenset()
    ) -> None:
        self._slots = asyncio.Semaphore(max(1, max_concurrent))
        self._budget = budget  # failed clusters still tolerated (negative: halted already)
        self._stage = stage
        self._known = known
        self.failed: list[str] = []
        self.in_flight = 0
        self.peak = 0

    @property
    def halted(self) -> bool:
        return len(self.failed) > self._budget

    @asynccontextmanager
    async def slot(self, cluster: str) -> AsyncIterator[str]:
        """A stage slot; yields "" when the cluster may start, else why it may not."""
        async with self._slots:
            if self.halted and cluster not in self._known:
                yield f"rollout halted in stage {self._stage}: no new cluster starts"
                return
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                yield ""
            finally:
                self.in_flight -= 1

    def finished(self, cluster: str, failed: bool) -> None:
        """A cluster that started is done; a new failure spends the budget."""
        if failed and cluster not in self._known:
            self.failed.append(cluster)
