"""The status writer: coalesces, throttles, skips unchanged writes, retries apart from
the caller, and `flush` waits until the newest status is stored. The API server is a
function here (pure logic of the writer; the real one is tested in e2e/test_operator*)."""

from __future__ import annotations

import asyncio
import logging
import time

from herd.api import StackStatus
from herd.operator.statuswriter import Gone, StatusWriter

LOG = logging.getLogger("test")


def status(message: str) -> StackStatus:
    return StackStatus(phase="Deploying", message=message)


async def test_coalesces_and_throttles() -> None:
    written: list[str] = []

    async def patch(s: StackStatus) -> None:
        written.append(s.message)

    writer = StatusWriter(patch, logger=LOG, interval=0.3)
    writer.start()
    for i in range(50):
        writer.offer(lambda i=i: status(f"m{i}"))
        await asyncio.sleep(0.01)
    await writer.flush()
    await writer.close()
    assert written[-1] == "m49"
    assert len(written) <= 4, written  # ~0.5 s of offers at one write per 0.3 s


async def test_unchanged_status_is_not_written() -> None:
    calls = 0

    async def patch(s: StackStatus) -> None:
        nonlocal calls
        calls += 1

    writer = StatusWriter(patch, logger=LOG, written=status("same"))
    writer.start()
    await writer.flush(lambda: status("same"))
    await writer.close()
    assert calls == 0


async def test_an_outage_delays_status_and_never_blocks_the_offerer() -> None:
    down_until = time.monotonic() + 1.0
    stored: list[str] = []

    async def patch(s: StackStatus) -> None:
        if time.monotonic() < down_until:
            raise ConnectionRefusedError("management API down")
        stored.append(s.message)

    writer = StatusWriter(patch, logger=LOG, interval=0.05, backoff_max=0.4)
    writer.start()
    started = time.monotonic()
    for i in range(20):
        writer.offer(lambda i=i: status(f"m{i}"))  # returns at once, API down or not
    assert time.monotonic() - started < 0.05
    assert (await writer.flush(lambda: status("final"))) == status("final")
    await writer.close()
    assert writer.failures == 0 and stored[-1] == "final"
    assert time.monotonic() >= down_until


async def test_flush_raises_gone_when_the_stack_is_deleted() -> None:
    async def patch(s: StackStatus) -> None:
        raise Gone()

    writer = StatusWriter(patch, logger=LOG)
    writer.start()
    try:
        await asyncio.wait_for(writer.flush(lambda: status("x")), 5)
    except Gone:
        pass
    else:
        raise AssertionError("flush did not raise Gone")
    await writer.close()
