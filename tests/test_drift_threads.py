"""Drift checks never wait on the executor they occupy.

A drift check's thread hands the release manifest to the worker pool and waits; the pool's
pipe I/O runs in the event loop's default executor. Checks of as many clusters as that
executor has threads, run in it, held every thread: the controller stalled (its Lease
lapsed; found by `benchmarks/peers.py` at 10 clusters on 2 cores). A real worker process
parses a real manifest here; no cluster is needed for that part.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from herd.rollout.drift import _in_worker, in_check_thread

MANIFEST = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n"


def test_more_checks_than_default_threads_all_finish() -> None:
    async def checks() -> list[list[object]]:
        loop = asyncio.get_running_loop()
        # A 2-core machine's default executor has cores + 4 threads: the same in small.
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        parse = _in_worker(loop)
        started = [in_check_thread(partial(parse, MANIFEST, "ns")) for _ in range(4)]
        return list(await asyncio.wait_for(asyncio.gather(*started), 60))

    # A loop of its own: the small executor never reaches another test's loop.
    found = asyncio.run(checks())

    assert [len(objects) for objects in found] == [1, 1, 1, 1]
