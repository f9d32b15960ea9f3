"""One Stack, one object: its keeper loop, wake-up signal, status and deletion state.

`Stacks` (one per process, made at startup by `herd.operator.handlers`) holds a
`ManagedStack` for each Stack this process has seen. The kopf handlers call it, and only
translate: `signal` on create/update/resume, `annotation_new` / `annotation_seen` for a
new `herd.suse.com/approve` or `herd.suse.com/reconcile-at` value, `keep` from the
per-Stack daemon, `delete` from the delete handler, `pause` while the Lease is not
renewed. The fleet poll (`herd.operator.runtime.Runtime.watch_fleet`) wakes Stacks
through `signal` too.

A `ManagedStack` owns what belongs to its Stack alone:

- its wake-up signal, and the wake annotations' values it has acted on;
- its keeper loop (`keep`): one `herd.operator.keeper.Keeper` pass at a time, each run to
  its end even when the daemon is cancelled (`finish_pass`); the keeper holds the Stack's
  status writer, Events and cluster backoff;
- its deletion state: the keeper stopped first (`stop_keeping`), the attempts (for the
  retry backoff), the last status known; the uninstall itself is
  `herd.operator.teardown.delete`.

What every Stack shares (clients, inventory, engine, gates, the target index) stays in
`herd.operator.runtime.Runtime`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from herd.api import StackStatus
from herd.errors import TransientError
from herd.names import APPROVE_ANNOTATION
from herd.operator import teardown
from herd.operator.events import Events, Logger
from herd.operator.index import StackKey
from herd.operator.keeper import Keeper, parse_status
from herd.operator.runtime import Runtime
from herd.operator.statuswriter import Gone

PASS_REPORT_SECONDS = 10.0  # a stop waiting on a pass says where it waits this often
PASS_REPORT_DEPTH = 64
KEEPER_WAIT = 10.0  # seconds to wait for a pass in progress before retrying the deletion


class ManagedStack:
    def __init__(self, runtime: Runtime, key: StackKey) -> None:
        self.key = key
        self._runtime = runtime
        self._wake = asyncio.Event()
        self._annotations: dict[str, str] = {}  # wake annotations' values, as last seen
        self._keeper: Keeper | None = None
        self._ended: asyncio.Event | None = None  # set when the keeper loop has ended
        self._deleting = False
        self._status: StackStatus | None = None  # last known, once no keeper runs
        self._events: Events | None = None  # the daemon's Event poster
        self._attempts = 0  # deletion attempts, for the retry's backoff

    def signal(self) -> None:
        """Reconcile now (or right after the current pass)."""
        self._wake.set()

    def annotation_new(self, annotation: str, value: str | None) -> bool:
        """Whether a watch event shows a value of a wake annotation not acted on yet
        (kopf's own diff ignores our group's annotations: `herd.operator.handlers`)."""
        return bool(value) and self._annotations.get(annotation) != value

    def annotation_seen(self, annotation: str, value: str | None) -> None:
        """A new value of `herd.suse.com/approve` (a gate waits for it) or
        `herd.suse.com/reconcile-at` (retry held failures now) wakes the keeper at once;
        the same value again does nothing."""
        if value and self.annotation_new(annotation, value):
            self.signal()
        if value:
            self._annotations[annotation] = value

    def annotation_gone(self, annotation: str) -> None:
        """A watch event without the annotation: its last value is forgotten, so the same
        value set again is new. (The keeper removes an approval it used; an event written
        before that removal may have recorded the value again after `_approval_used`.)"""
        self._annotations.pop(annotation, None)

    def _approval_used(self) -> None:
        # The keeper removes the approval it recorded: the same value set again is new.
        self._annotations.pop(APPROVE_ANNOTATION, None)

    async def keep(self, body: Any, stopped: Any, logger: Logger, events: Events) -> None:
        """Reconcile the Stack in `body` (a live view) until `stopped` or its deletion."""
        ended = self._ended = asyncio.Event()
        self._events = events
        keeper = self._keeper = Keeper(
            self._runtime, body, logger, events, on_approval=self._approval_used
        )
        keeper.writer.start()
        try:
            while not stopped and not self._deleting:
                self._wake.clear()
                delay = await finish_pass(keeper.reconcile(body), logger)
                if self._deleting:
                    break
                await _first_of(self._wake, stopped, delay)
        except Gone:
            logger.info("The Stack is gone; its keeper stops")
        finally:
            if keeper.writer.written is not None:
                self._status = keeper.writer.written
            await keeper.writer.close()
            self._keeper = None
            ended.set()

    async def stop_keeping(self, timeout: float) -> bool:
        """No pass of the Stack starts any more; True once none is running."""
        self._deleting = True
        self.signal()
        if self._ended is None:
            return True
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def last_status(self) -> StackStatus | None:
        keeper = self._keeper
        if keeper is not None and keeper.writer.written is not None:
            return keeper.writer.written
        return self._status

    async def delete(self, body: Any, logger: Logger) -> None:
        """Stop the keeper, then uninstall (`herd.operator.teardown`); returns once the
        Stack may go. `TransientError` (with a delay) keeps the finalizer: the status
        then shows what the deletion waits for."""
        self._attempts += 1
        if not await self.stop_keeping(KEEPER_WAIT):
            raise TransientError("waiting for the Stack's current pass to finish", delay=5.0)
        previous = self.last_status() or parse_status(body)
        waiting = await teardown.delete(
            self._runtime,
            body,
            previous,
            attempt=self._attempts,
            logger=logger,
            events=self._events,
        )
        if waiting is None:
            return
        try:
            await self._runtime.patch_status(self.key, waiting.status)
            self._status = waiting.status
        except Exception as error:  # status is a courtesy here; the retry is what counts
            logger.warning("Cannot write the deleting status: %s", error)
        raise TransientError(waiting.message, delay=waiting.delay)


class Stacks:
    """Every Stack this process keeps, by (namespace, name)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stacks: dict[StackKey, ManagedStack] = {}

    def _stack(self, key: StackKey) -> ManagedStack:
        stack = self._stacks.get(key)
        if stack is None:
            stack = self._stacks[key] = ManagedStack(self.runtime, key)
        return stack

    def kept(self) -> list[StackKey]:
        return list(self._stacks)

    def signal(self, key: StackKey) -> None:
        """Ask the Stack's keeper to reconcile now (or right after its current pass)."""
        self._stack(key).signal()

    def pause(self, paused: bool) -> None:
        """Start no new helm work (the leader Lease is not renewed), or resume it and
        reconcile every Stack: a pass made while paused left its releases pending."""
        gates = self.runtime.gates
        if paused:
            gates.pause()
            return
        gates.resume()
        for stack in self._stacks.values():
            stack.signal()

    def annotation_new(self, key: StackKey, annotation: str, value: str | None) -> bool:
        stack = self._stacks.get(key)
        return bool(value) if stack is None else stack.annotation_new(annotation, value)

    def annotation_seen(self, key: StackKey, annotation: str, value: str | None) -> None:
        if value:
            self._stack(key).annotation_seen(annotation, value)

    def annotation_gone(self, key: StackKey, annotation: str) -> None:
        stack = self._stacks.get(key)
        if stack is not None:
            stack.annotation_gone(annotation)

    async def keep(self, body: Any, stopped: Any, logger: Logger, events: Events) -> None:
        key: StackKey = (body["metadata"]["namespace"], body["metadata"]["name"])
        await self._stack(key).keep(body, stopped, logger, events)

    async def delete(self, body: Any, logger: Logger) -> None:
        """Uninstall the Stack's releases, then forget it; `TransientError` (with a delay)
        keeps the finalizer."""
        key: StackKey = (body["metadata"]["namespace"], body["metadata"]["name"])
        await self._stack(key).delete(body, logger)
        self.forget(key)

    def forget(self, key: StackKey) -> None:
        """The Stack is gone: drop everything this process kept about it."""
        self.runtime.index.remove(key)
        self.runtime.fleet.forget(key)
        self._stacks.pop(key, None)


async def finish_pass(work: Coroutine[Any, Any, float], logger: Logger) -> float:
    """Run a pass to its end even when the daemon is cancelled (kopf cancels a Stack's
    daemon on deletion and at shutdown): helm is never killed half-way by that. Graceful
    shutdown makes a pass short by draining `Runtime.gates`; deletion waits for it."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            logger.info("Letting the Stack's current pass finish before stopping")
        report_at = time.monotonic() + PASS_REPORT_SECONDS
        while not task.done():  # the loop ends (and deletion may go on) only after it
            try:
                await asyncio.wait({task}, timeout=max(0.0, report_at - time.monotonic()))
            except asyncio.CancelledError:
                continue  # kopf cancels again and again: the report keeps its own clock
            if not task.done() and time.monotonic() >= report_at:  # say where it waits
                logger.info("Still waiting for the Stack's pass, at %s", where(task))
                report_at += PASS_REPORT_SECONDS
        raise


def where(task: asyncio.Future[Any]) -> str:
    """The innermost coroutine a pass waits in (file:line function), and what it awaits."""
    coro: Any = task.get_coro() if isinstance(task, asyncio.Task) else None
    frame, awaited = None, None
    for _ in range(PASS_REPORT_DEPTH):  # bounded: an await chain is a few dozen deep
        if coro is None or getattr(coro, "cr_frame", None) is None:
            break
        frame, awaited = coro.cr_frame, coro.cr_await
        coro = awaited if hasattr(awaited, "cr_frame") else None
    if frame is None:
        return "an unknown point"
    name = frame.f_code.co_filename.rsplit("/herd/", 1)[-1]
    what = type(awaited).__name__ if awaited is not None else "nothing"
    return f"{name}:{frame.f_lineno} {frame.f_code.co_name}, awaiting a {what}"


async def _first_of(wake: asyncio.Event, stopped: Any, delay: float) -> None:
    """Wait for `wake`, the daemon's stop, or `delay` seconds, whichever comes first."""
    waiter = asyncio.ensure_future(wake.wait())
    stopper = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({waiter, stopper}, timeout=delay, return_when="FIRST_COMPLETED")
    finally:
        waiter.cancel()
        stopper.cancel()
