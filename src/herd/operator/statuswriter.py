"""One status writer per Stack: the newest status reaches the API server, apart from helm.

The keeper (`herd.operator.keeper`) and its rollout's progress callback only `offer` a
status (a function building it, so a burst of progress events builds it once); a task
owned by the writer writes the newest one, at most once per `interval` while helm runs,
only when it differs from what was last written (timestamps aside), and retries a failed
write with exponential backoff and jitter (`herd.plan.retry.next_delay`). A management API
outage therefore only delays status: nothing waits on it but `flush`, which the keeper
calls between passes so the next pass decides from what is really stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from herd.api import StackStatus
from herd.errors import PermanentError, describe
from herd.operator import metrics
from herd.plan.retry import jitter, next_delay

Patch = Callable[[StackStatus], Awaitable[None]]
Build = Callable[[], StackStatus]
Logger = logging.Logger | logging.LoggerAdapter[Any]


class Gone(PermanentError):
    """The Stack no longer exists: there is nothing to write to (raised by a `Patch`)."""


class StatusWriter:
    def __init__(
        self,
        patch: Patch,
        *,
        logger: Logger,
        written: StackStatus | None = None,
        interval: float = 1.0,
        backoff_max: float = 30.0,
    ) -> None:
        self._patch = patch
        self._logger = logger
        self._interval = interval
        self._backoff_max = backoff_max
        self.written = written  # what the API server holds, as far as this writer knows
        self._build: Build | None = None
        self._offered = 0  # counts offers; `_done` is the offer last written (or dropped)
        self._done = 0
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._urgent = False
        self._last_write = 0.0
        self.failures = 0  # failed writes in a row (tests, logs)
        self._gone = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="herd-status-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def offer(self, build: Build) -> None:
        """Make `build()` the status to write next; never blocks, never raises."""
        self._build = build
        self._offered += 1
        self._wake.set()

    async def flush(self, build: Build | None = None) -> StackStatus | None:
        """Write the newest status now (no throttle), retrying until it is stored; returns
        what is stored. Raises `Gone` when the Stack disappeared."""
        if build is not None:
            self.offer(build)
        self._urgent = True
        self._wake.set()
        target = self._offered
        async with self._changed:
            await self._changed.wait_for(lambda: self._done >= target or self._task is None)
        if self._gone:
            raise Gone()
        return self.written

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if not self._urgent:
                    await asyncio.sleep(max(0.0, self._last_write + self._interval - _clock()))
                if not await self._write_newest():
                    return
        finally:
            self._task = None
            async with self._changed:
                self._changed.notify_all()

    async def _write_newest(self) -> bool:
        """Write until the newest offer is stored; False once the Stack is gone."""
        attempt = 0
        while True:
            offer, build = self._offered, self._build
            if build is None:
                return True
            try:
                status = build()
                if self.written is None or comparable(self.written) != comparable(status):
                    await self._patch(status)
                    self._last_write = _clock()
                    self.written = status
                self.failures = 0
            except Gone:
                self._gone = True
                return False
            except Exception as error:  # the API server, a bug in building: retry, later
                attempt += 1
                self.failures = attempt
                metrics.STATUS_WRITE_FAILURES.inc()
                delay = next_delay(attempt, rand=jitter(), base=0.5, cap=self._backoff_max)
                self._logger.warning(
                    "Cannot write the Stack's status (attempt %d; retrying in %.1fs): %s",
                    attempt,
                    delay,
                    describe(error),
                )
                await asyncio.sleep(delay)
                continue
            await self._finish(offer)
            if self._offered == offer:
                self._urgent = False
                return True
            # A newer status arrived while writing: go on (throttled unless flushed).
            if not self._urgent:
                await asyncio.sleep(max(0.0, self._last_write + self._interval - _clock()))
            attempt = 0

    async def _finish(self, offer: int) -> None:
        async with self._changed:
            self._done = max(self._done, offer)
            self._changed.notify_all()


def _clock() -> float:
    return time.monotonic()


def comparable(status: StackStatus) -> dict[str, Any]:
    """A status without timestamps: equal means writing it would change nothing."""
    data = status.model_dump(mode="json")
    for row in data["deployments"]:
        row.pop("last_updated", None)
    for condition in data["conditions"]:
        condition.pop("last_transition_time", None)
    return data
