"""The process always ends: a watchdog that exits once the shutdown budget is spent.

A controller that has decided to stop (SIGTERM, or its Lease was lost) stops gracefully in
`herd.operator.handlers` (no new helm work, running helm may finish, kopf stops, the Lease
is handed over). That can hang: a thread stuck in a blocking call keeps `asyncio.run`
(which joins its executor) and the interpreter's exit (which joins threads) waiting, and a
SIGTERM is already handled. So `Watchdog.arm` starts a daemon thread that, when the budget
(`HERD_EXIT_SECONDS`) is spent, runs the best-effort cleanups (each with a short time
limit: kill check workers, hand the Lease over) and calls `os._exit`.

Callers: `herd.operator.handlers` arms it when the stop is decided; tests read the log
line "Shutdown budget of" to tell a forced exit from a clean one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

CLEANUP_SECONDS = 2.0  # each cleanup step gets this long, at most

logger = logging.getLogger(__name__)


class Watchdog:
    """Armed once; `os._exit(code)` when the budget runs out, unless the process ended."""

    def __init__(self) -> None:
        self._cleanups: list[tuple[str, Callable[[], object]]] = []
        self._armed: threading.Thread | None = None

    def on_exit(self, what: str, cleanup: Callable[[], object]) -> None:
        """Run `cleanup` (best effort, bounded) before a forced exit."""
        self._cleanups.append((what, cleanup))

    def arm(self, seconds: float, code: int, why: str) -> None:
        """Exit with `code` after `seconds` unless the process has ended by then."""
        if self._armed is not None:
            return
        logger.info("Stopping (%s): exiting within %.0fs", why, seconds)
        self._armed = threading.Thread(
            target=self._expire, args=(seconds, code), name="herd exit watchdog", daemon=True
        )
        self._armed.start()

    def _expire(self, seconds: float, code: int) -> None:
        time.sleep(seconds)
        logger.error("Shutdown budget of %.0fs spent; exiting now (code %d)", seconds, code)
        for what, cleanup in reversed(self._cleanups):
            step = threading.Thread(target=_quietly, args=(what, cleanup), daemon=True)
            step.start()
            step.join(CLEANUP_SECONDS)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def _quietly(what: str, cleanup: Callable[[], object]) -> None:
    try:
        cleanup()
    except Exception as error:
        logger.warning("Could not %s on exit: %s", what, error)
