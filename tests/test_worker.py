"""Checks in worker processes: answers, the check's own errors, the time and memory limits,
reuse, and an event loop that keeps running while a check burns CPU. Real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from e2e.testbed import hostile_charts
from herd.helm import worker
from herd.helm.chart_crds import ChartCrdError, ChartFile, parse_crds
from herd.plan import yamlsafe
from loop_watch import late_while

LIMITS = worker.Limits(seconds=3.0, memory_bytes=512 * worker.MIB, workers=1)


def test_answers_errors_reuse_and_limits() -> None:
    async def scenario() -> None:
        pool = worker.WorkerPool(LIMITS)
        try:
            assert await pool.run("pid", os.getpid) != os.getpid()
            first = await pool.run("pid", os.getpid)
            assert await pool.run("pid", os.getpid) == first  # the same child, reused
            bomb = [ChartFile("app/crds/bomb.yaml", hostile_charts.alias_bomb())]
            with pytest.raises(ChartCrdError, match="is refused: more than"):
                await pool.run("reading CRDs", parse_crds, bomb)
            started = time.monotonic()
            with pytest.raises(worker.WorkerTimeout, match="did not finish within 3s"):
                await pool.run("a stalled check", time.sleep, 60)
            assert time.monotonic() - started < 10
            assert await pool.run("pid", os.getpid) != first  # the stalled child was killed
            with pytest.raises(worker.WorkerFailed, match="out of memory"):
                await pool.run("a memory bomb", bytearray, 2 * 1024 * worker.MIB)
        finally:
            pool.close()

    asyncio.run(scenario())


def test_warm_starts_the_workers_ahead_of_the_first_check() -> None:
    """A staged pass with checks warms the pool while helm deploys: the first check finds
    started workers (the fork server's start is the seconds a cold first round waited).
    A check that comes while it warms waits for those workers instead of its own."""

    async def scenario() -> None:
        pool = worker.WorkerPool(replace(LIMITS, workers=2))
        try:
            pool.warm()
            pool.warm()  # once at a time
            assert await pool.run("pid", os.getpid) != os.getpid()  # came while warming
            started = time.monotonic()
            while pool.idle < 2:  # no check asked for a second worker: warm() started it
                assert time.monotonic() - started < 30, pool.idle
                await asyncio.sleep(0.05)
            started = time.monotonic()
            pids = await asyncio.gather(*(pool.run("pid", os.getpid) for _ in range(2)))
            assert time.monotonic() - started < 1.0, "started, not reused"
            assert len(set(pids)) == 2
            assert pool.idle == 2  # bounded: never more than `workers`
        finally:
            pool.close()

    asyncio.run(scenario())


def test_a_warmed_pool_answers_its_first_check_from_the_waiting_worker() -> None:
    async def scenario() -> None:
        pool = worker.WorkerPool(LIMITS)
        try:
            await pool.warmed()
            await pool.warmed()  # one idle worker is enough: no second one
            assert len(pool._idle) == 1
            waiting = pool._idle[0].process.pid
            assert await pool.run("pid", os.getpid) == waiting  # no process started for it
        finally:
            pool.close()
        await pool.warmed()  # closed: starts nothing
        assert not pool._idle

    asyncio.run(scenario())


def test_a_long_temp_directory_still_starts_workers(tmp_path: Path) -> None:
    """The controller's temp files live in its work directory, whose path may be longer
    than an AF_UNIX socket path allows (it was, under pytest-xdist: every render check
    failed with 'AF_UNIX path too long'). A fresh process, since the fork server is one
    per process."""
    long = tmp_path / ("d" * 60) / ("e" * 60)
    script = (
        "import asyncio, os, tempfile\n"
        "from herd.helm import worker\n"
        f"tempfile.tempdir = {str(long)!r}\n"
        "os.makedirs(tempfile.tempdir, exist_ok=True)\n"
        "pool = worker.WorkerPool(worker.Limits(seconds=10.0, memory_bytes=512 * worker.MIB))\n"
        "print(asyncio.run(pool.run('pid', os.getpid)) != os.getpid())\n"
        "pool.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "True", done.stderr[-2000:]


def test_the_event_loop_keeps_running_while_a_check_burns_cpu() -> None:
    """Lateness of a 50 ms timer while a child parses a big manifest (bounded, not timed).

    Were the parse on the event loop, the timer would be late by about the whole parse;
    off it, by a fraction of it even on a loaded machine (the limit here is generous for
    the same reason: the test is about the loop, not the limit)."""
    manifest = "".join(
        f"---\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{a: b}}\n" for i in range(4000)
    )

    async def scenario() -> tuple[int, float, float]:
        pool = worker.WorkerPool(replace(LIMITS, seconds=60.0))
        try:
            return await late_while(pool.run("parse", _count, manifest))
        finally:
            pool.close()

    count, worst, parse = asyncio.run(scenario())
    assert count == 4000
    assert worst < max(0.25, parse / 4), (worst, parse)


def _count(manifest: str) -> int:
    return len(list(yamlsafe.load_all(manifest)))


def test_closing_the_pool_ends_a_check_in_progress_at_once() -> None:
    """A stopping controller closes the pool (`herd.operator.handlers._stop`): a check in
    progress ends within a second with `WorkerDied` (not a verdict on the release), however
    long its limit, and no check starts after that."""

    async def scenario() -> None:
        pool = worker.WorkerPool(replace(LIMITS, seconds=60.0))
        try:
            assert await pool.run("pid", os.getpid) != os.getpid()  # started and idle
            check = asyncio.create_task(pool.run("a long check", time.sleep, 60))
            await asyncio.sleep(0.5)
            assert not check.done()
            started = time.monotonic()
            pool.close()
            with pytest.raises(worker.WorkerDied, match="without an answer"):
                await asyncio.wait_for(check, 10)
            assert time.monotonic() - started < 2
            with pytest.raises(worker.WorkerDied, match="the check workers are closed"):
                await pool.run("pid", os.getpid)
        finally:
            pool.close()

    asyncio.run(scenario())
