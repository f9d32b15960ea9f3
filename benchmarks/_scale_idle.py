"""The test bed's idle CPU, measured before a rollout and taken off its CPU per release.

A test bed of N control planes burns CPU with nothing to do: the API servers' and
controller managers' loops, etcd's heartbeats, kwok. At 21 light clusters that was 0.38
cores, which a 20 x 20 rollout of about 280 s charged to its releases as about a quarter
of its "CPU per release", and more to a slower rollout than to a faster one.
`benchmarks.peers` takes the API servers' idle rate off; `benchmarks.scale` and
`benchmarks.cpu_compare` print both figures: gross, and net of each test-bed program's
idle rate times the window's wall time. Herd's controller and helm are never netted: the
controller's idle (Lease renewal, fleet poll) is Herd's cost, and helm has no idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

NOT_NETTED = frozenset({"herd controller", "helm"})


def idle_rates(sample: Callable[[], Mapping[str, float]], seconds: float) -> dict[str, float]:
    """CPU-s per second of each test-bed program while nothing is rolled out."""
    if seconds <= 0:
        return {}
    before, began = sample(), time.monotonic()
    time.sleep(seconds)
    after, took = sample(), time.monotonic() - began
    kept = {k: v for k, v in after.items() if k not in NOT_NETTED}
    return {k: max(0.0, (v - before.get(k, 0.0)) / took) for k, v in kept.items()}


def net(used: Mapping[str, float], rates: Mapping[str, float], wall: float) -> dict[str, float]:
    """`used` CPU-s by program less each program's idle rate over `wall` seconds (never
    below zero: a program can be idler in the rollout than in the measurement)."""
    return {k: max(0.0, v - rates.get(k, 0.0) * wall) for k, v in used.items()}


def describe(rates: Mapping[str, float], seconds: float) -> str:
    """The idle rates as one line: total cores, then each program's."""
    parts = ", ".join(f"{k} {v:.3f}" for k, v in sorted(rates.items(), key=lambda i: -i[1]))
    return f"{sum(rates.values()):.3f} cores over {seconds:.0f} s ({parts or 'not measured'})"


def per_release(used: Mapping[str, float], releases: int) -> str:
    """CPU-s per release by program, most first, the total, and Herd's share of it."""
    total = sum(used.values())
    ordered = sorted(used.items(), key=lambda i: -i[1])
    return (
        ", ".join(f"{k} {v / releases:.3f} s" for k, v in ordered)
        + f"; total {total / releases:.3f} CPU-s; Herd's share "
        f"{100 * used.get('herd controller', 0.0) / max(total, 1e-9):.1f}%"
    )
