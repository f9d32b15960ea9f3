"""How late the event loop runs a 50 ms timer while some work is awaited: `late_while`.

Callers: the tests that prove hostile input is parsed off the event loop (worker pool)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def late_while(work: Awaitable[T]) -> tuple[T, float, float]:
    """`work`'s result, the worst lateness of a 50 ms timer meanwhile, and the seconds
    `work` took. The timer is running before the work starts and wakes once after it
    ends, so work that blocks the loop shows as lateness of about its own time."""
    late = 0.0

    async def ticks() -> None:
        nonlocal late
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.05)
            late = max(late, time.monotonic() - started - 0.05)

    ticker = asyncio.create_task(ticks())
    await asyncio.sleep(0.1)
    began = time.monotonic()
    try:
        result = await work
        took = time.monotonic() - began
        await asyncio.sleep(0.1)
    finally:
        ticker.cancel()
    return result, late, took
