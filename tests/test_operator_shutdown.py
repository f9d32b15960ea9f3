"""The exit watchdog ends a process whose threads hang, after its cleanups (real process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from herd.operator.config import OperatorConfig

STUCK = textwrap.dedent(
    """
    import asyncio, threading, time
    from herd.operator.shutdown import Watchdog

    async def main():
        watchdog = Watchdog()
        watchdog.on_exit("say goodbye", lambda: print("cleanup ran", flush=True))
        watchdog.on_exit("hang", lambda: time.sleep(60))  # a cleanup that hangs is cut short
        watchdog.arm(1.0, 3, "test")
        await asyncio.to_thread(time.sleep, 3600)  # a thread stuck in a call

    asyncio.run(main())
    """
)


def test_a_process_stuck_in_a_thread_exits_within_its_budget() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STUCK], capture_output=True, text=True, timeout=60, check=False
    )
    took = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert "cleanup ran" in done.stdout
    assert took < 1.0 + 2 * 2.0 + 5  # budget, two bounded cleanups, interpreter start


def test_the_exit_budget_follows_the_helm_budget_unless_set() -> None:
    assert OperatorConfig.from_env({}).exit_budget == 25.0  # under a pod's default 30 s grace
    assert OperatorConfig.from_env({"HERD_SHUTDOWN_SECONDS": "300"}).exit_budget == 310.0
    assert OperatorConfig.from_env({"HERD_EXIT_SECONDS": "7"}).exit_budget == 7.0


def test_a_leader_that_lost_its_lease_has_a_short_exit_budget() -> None:
    """Its helm is killed at once, so a pass that does not end never holds it for the helm
    budget (test_ha's lost-Lease test waited 30 s+ with HERD_SHUTDOWN_SECONDS=60)."""
    assert OperatorConfig.from_env({"HERD_SHUTDOWN_SECONDS": "60"}).lost_exit_budget == 10.0
    assert OperatorConfig.from_env({}).lost_exit_budget == 10.0
    assert OperatorConfig.from_env({"HERD_EXIT_SECONDS": "7"}).lost_exit_budget == 7.0
