"""What every rollout of a process shares: release locks, helm and cluster slots, drain.

`Gates` is process-wide (C1): one per engine, so however many Stacks reconcile at once,
helm never runs twice on one release, never more than `helm` times in all, and never on
more than `clusters` clusters at once. `drain()` (on SIGTERM) makes every helm operation
that has not started yet not start; `idle()` returns once no helm process of this process
runs, so the operator can let running helm finish within the pod's grace period.

Callers: `herd.rollout.scheduler` and `herd.rollout.actions` (slots, locks), the engine
(one per process), the operator (drain, idle).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from herd.errors import TransientError

if TYPE_CHECKING:  # only annotations: the CLI's parser imports this module for its limits
    from herd.plan.releases import ReleaseKey


@dataclass(frozen=True)
class Limits:
    """The one place for the concurrency defaults; other code imports `DEFAULT_LIMITS`."""

    clusters: int = 10  # clusters worked on at once, in the whole process
    helm: int = 8  # helm processes at once, all clusters together (memory of a small pod)


DEFAULT_LIMITS = Limits()
DRAINING_MESSAGE = "controller shutting down"
PAUSED_MESSAGE = "controller paused: it cannot renew its leader Lease"


class Draining(TransientError):
    """A helm operation was about to start while the process drains."""


class Gates:
    def __init__(self, helm: int = DEFAULT_LIMITS.helm, clusters: int = DEFAULT_LIMITS.clusters):
        self.helm = asyncio.Semaphore(helm)
        self.clusters = asyncio.Semaphore(clusters)
        self._locks: dict[ReleaseKey, asyncio.Lock] = {}
        self._draining = False
        self._paused = False
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def draining(self) -> bool:
        """Whether a helm operation about to start would not start (drained or paused)."""
        return self._draining or self._paused

    def drain(self) -> None:
        """Start no new helm operation from now on (they raise `Draining`)."""
        self._draining = True

    def pause(self) -> None:
        """Start no new helm operation until `resume` (running ones go on)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def check(self) -> None:
        """Raise `Draining` when no new helm operation may start now."""
        if self._draining:
            raise Draining(DRAINING_MESSAGE)
        if self._paused:
            raise Draining(PAUSED_MESSAGE)

    async def idle(self) -> None:
        """Return when no helm process of this process is running."""
        await self._idle.wait()

    def release(self, key: ReleaseKey) -> asyncio.Lock:
        """The lock of one release: held from its fresh observation until its helm ends."""
        return self._locks.setdefault(key, asyncio.Lock())

    def holds(self, key: ReleaseKey) -> bool:
        """Whether some task of this process holds the release's lock."""
        lock = self._locks.get(key)
        return lock is not None and lock.locked()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One helm process: waits for a slot; raises `Draining` instead of starting."""
        self.check()
        async with self.helm:
            self.check()
            self._running += 1
            self._idle.clear()
            try:
                yield
            finally:
                self._running -= 1
                if self._running == 0:
                    self._idle.set()
