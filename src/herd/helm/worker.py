"""CPU-heavy checks of tenant bytes in child processes, with a wall-clock and a memory limit.

A thread is not enough for work on hostile input: PyYAML and C regular expressions hold the
GIL (the event loop stalls, the Lease stops renewing), and a thread cannot be stopped. So
`WorkerPool.run` sends a picklable function and its arguments to a child process and awaits
the answer without blocking the event loop:

- the child runs under `RLIMIT_AS` (`memory_bytes`): a bomb that still slips through ends
  in a `MemoryError` there, never in the controller;
- after `seconds` the child is killed (SIGKILL) and `WorkerTimeout` raised;
- a child that dies without answering (killed, crashed) raises `WorkerFailed`, which
  callers treat as transient (`WorkerDied`) (the controller may be stopping); a `MemoryError` in the
  child comes back as a `WorkerFailed` answer, which they treat as the check's verdict;
- children are reused (a fork from a `forkserver` that preloaded Herd), so a check costs a
  round trip through a pipe, not an interpreter start (about 1 ms for a small manifest);
- `warm` starts them ahead of need, in a thread (the fork server's first start imports
  Herd: 1.5-2.5 s on a loaded machine): a staged pass with checks warms the pool while
  helm deploys, so its first check round does not wait for it; a check that comes while
  the pool warms waits for that start instead of starting its own;
- a child exits with its parent: it reads its pipe until EOF, and the kernel kills it
  (`PR_SET_PDEATHSIG`) when the fork server, which ends with the controller, goes.

The function's own exceptions come back as they were raised (re-raised in the caller).
One process-wide pool (`pool()`), configured once by the operator (`configure`), is used by
`herd.rollout.tenants` (the render check), `herd.helm.crd_apply` (reading a chart's CRDs) and
`herd.rollout.drift` (parsing a release's stored manifest), `herd.clusters.readiness` and
`herd.addons.images` (a stage's readiness and security checks), warmed by
`herd.rollout.staged`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.util
import pickle
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from herd.errors import ReleaseError

logger = logging.getLogger(__name__)
T = TypeVar("T")
MIB = 1024 * 1024
# Imported once by the fork server (not by each child when its first check arrives).
PRELOAD = ["herd.plan.tenancy", "herd.helm.chart_crds", "herd.plan.drift", "herd.plan.kstatus"]
START_SECONDS = 60.0  # the first start also starts the fork server (imports Herd)


class WorkerError(ReleaseError):
    """A check could not finish; the message says which and why (bounded)."""


class WorkerTimeout(WorkerError):
    """The check ran longer than its limit; its process was killed."""


class WorkerFailed(WorkerError):
    """The check ran out of memory (or its answer could not be sent): its verdict."""


class WorkerDied(WorkerError):
    """The check's process ended without an answer (killed, crashed): try again later."""


@dataclass(frozen=True)
class Limits:
    seconds: float = 10.0
    memory_bytes: int = 1024 * MIB
    workers: int = 2
    # Tests only (HERD_TEST_STALL_CHECKS): every check hangs in a controller thread that never
    # returns (the shutdown watchdog's real case: a thread stuck in a blocking call, which
    # asyncio.run then joins).
    stall: bool = False


class _Child:
    """One worker process and our end of its pipe."""

    def __init__(self, context: Any, memory_bytes: int) -> None:
        ours, theirs = context.Pipe()
        self.conn: Connection = ours
        self.process: BaseProcess = context.Process(
            target=_serve, args=(theirs, memory_bytes), daemon=True, name="herd-check"
        )
        self.process.start()
        theirs.close()

    def kill(self) -> None:
        """SIGKILL, close our end; reaped at once in practice (a killed process ends)."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.join(0.2)


class WorkerPool:
    """A few reusable worker processes; at most `limits.workers` checks run at once."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()  # answering a check now: `close` kills them too
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._context: Any = None
        self._closed = False
        self._starting = threading.Lock()  # one thread makes the fork server's context
        self._warming: concurrent.futures.Future[None] | None = None

    @property
    def idle(self) -> int:
        """Worker processes started and waiting for a check."""
        return len(self._idle)

    def warm(self) -> None:
        """Start the worker processes now, in a thread, so that a check that comes later
        finds them started. Returns at once; a failed start is logged (a check then starts
        its own, as without `warm`)."""
        if self._closed or len(self._idle) >= self._size:
            return
        if self._warming is not None and not self._warming.done():
            return
        self._warming = concurrent.futures.Future()
        self._warming.set_running_or_notify_cancel()  # a waiter's timeout cannot cancel it
        threading.Thread(
            target=self._warm_up, args=(self._warming,), daemon=True, name="herd-check-warm"
        ).start()

    @property
    def _size(self) -> int:
        return max(1, self.limits.workers)

    def _warm_up(self, done: concurrent.futures.Future[None]) -> None:
        try:
            while not self._closed and len(self._idle) < self._size:
                child = self._start()
                if self._closed:
                    child.kill()
                    break
                self._idle.append(child)  # a list append is atomic: the loop may pop
                if self._closed:  # closed meanwhile: kill what close() did not see
                    self.close()
        except Exception as error:  # OSError, a fork server that did not start
            logger.info("The check workers did not start ahead of need: %r", error)
        finally:
            done.set_result(None)

    async def run(self, what: str, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a worker process; raises `WorkerError` or the function's own
        exception. `what` names the check in messages ("the render check")."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:  # a semaphore serves one loop
            self._slots = (loop, asyncio.Semaphore(self._size))
        async with self._slots[1]:
            warming = self._warming
            if not self._idle and warming is not None and not warming.done():
                with contextlib.suppress(TimeoutError):  # then start one of our own
                    await asyncio.wait_for(asyncio.wrap_future(warming), START_SECONDS)
            self._unless_closed(what)
            child = self._idle.pop() if self._idle else await self._spawn(what)
            self._busy.add(child)
            try:
                self._unless_closed(what)
                answer = await self._call(child, what, function, args)
            except BaseException:
                child.kill()  # timed out, cancelled, closed or died: never reused
                raise
            finally:
                self._busy.discard(child)
            if self._closed or len(self._idle) >= self._size:
                child.kill()
            else:
                self._idle.append(child)
        ok, value = answer
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    async def warmed(self) -> None:
        """`warm`, and wait until it is done (the operator's standby does, so a new
        leader's first render check does not wait for the fork server)."""
        self.warm()
        if self._warming is not None:
            await asyncio.wrap_future(self._warming)

    async def _spawn(self, what: str) -> _Child:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._start), START_SECONDS)
        except (TimeoutError, OSError) as error:
            raise WorkerDied(f"{what} could not start a worker process ({error!r})") from None

    async def _call(
        self, child: _Child, what: str, function: Callable[..., Any], args: tuple[Any, ...]
    ) -> tuple[bool, Any]:
        """Send, wait and read within the time limit: a thread blocked on the pipe ends
        when the child is killed (the pipe breaks)."""
        try:
            return await asyncio.wait_for(
                self._exchange(child, function, args), self.limits.seconds
            )
        except TimeoutError:
            raise WorkerTimeout(
                f"{what} did not finish within {self.limits.seconds:g}s and was stopped"
            ) from None
        except (EOFError, OSError):
            child.process.join(1)
            code = child.process.exitcode
            raise WorkerDied(f"{what} stopped without an answer (exit code {code})") from None

    async def _exchange(
        self, child: _Child, function: Callable[..., Any], args: tuple[Any, ...]
    ) -> tuple[bool, Any]:
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        await asyncio.to_thread(child.conn.send, (function, args))
        if self.limits.stall:  # tests: a thread stuck in a blocking call
            await asyncio.to_thread(threading.Event().wait)

        def answered() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(child.conn.fileno(), answered)
        try:
            await readable
        finally:
            loop.remove_reader(child.conn.fileno())
        answer: tuple[bool, Any] = await asyncio.to_thread(child.conn.recv)
        return answer

    def _start(self) -> _Child:
        with self._starting:
            if self._context is None:
                _short_socket_directory()
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(PRELOAD)
                self._context = context
        return _Child(self._context, self.limits.memory_bytes)

    def _unless_closed(self, what: str) -> None:
        if self._closed:
            raise WorkerDied(f"{what} was stopped: the check workers are closed")

    def close(self) -> None:
        """Kill every worker, idle and busy: a check in progress ends at once with
        `WorkerDied` (its pipe breaks), and no later check starts (the process stops)."""
        self._closed = True
        for child in self._idle:
            child.kill()
        self._idle.clear()
        for child in list(self._busy):  # its check reads EOF, then `run` closes the pipe
            with contextlib.suppress(OSError, ValueError):
                child.process.kill()


# An AF_UNIX socket path holds at most 107 bytes. The fork server's socket goes to
# `<temp dir>/pymp-XXXXXXXX/listener-XXXXXXXX` (33 bytes more), and the temp directory is
# the work directory's (`herd.helm.workdir.keep_temp_files_in`), which may be long.
_SOCKET_DIR_MAX = 107 - 40


def _short_socket_directory() -> None:
    """Give multiprocessing a short private directory (0700, removed at exit) for its
    sockets when the temp directory is too long for one; it holds no secret."""
    if len(tempfile.gettempdir()) <= _SOCKET_DIR_MAX:
        return
    saved = tempfile.tempdir
    tempfile.tempdir = "/tmp"  # noqa: S108  (only multiprocessing's directory goes there)
    try:
        multiprocessing.util.get_temp_dir()  # made now, kept for this process
    finally:
        tempfile.tempdir = saved


def _serve(conn: Connection, memory_bytes: int) -> None:
    """The child's loop: run what arrives, answer (ok, value), until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the controller's
    if memory_bytes:
        import resource  # noqa: PLC0415 (only in the child)

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            function, args = pickle.loads(message)  # noqa: S301 (from our own parent)
            answer: tuple[bool, Any] = (True, function(*args))
        except MemoryError:
            answer = (False, WorkerFailed("the check ran out of memory"))
        except Exception as error:
            answer = (False, error)
        try:
            conn.send(answer)
        except Exception as error:
            conn.send((False, WorkerFailed(f"the check's answer could not be sent: {error}")))


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


_POOL = WorkerPool()
# Before multiprocessing's own exit hook (registered earlier, so run later), which would
# join the workers: they wait on their pipe, so kill them.
atexit.register(lambda: _POOL.close())  # noqa: PLW0108 (the pool `configure` set last)


def configure(limits: Limits) -> None:
    """Set the process-wide pool's limits (the operator, once at start)."""
    global _POOL  # noqa: PLW0603 (one pool per process, like the event loop)
    _POOL.close()
    _POOL = WorkerPool(limits)


def pool() -> WorkerPool:
    return _POOL
