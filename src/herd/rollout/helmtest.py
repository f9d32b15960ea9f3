"""`charts[].test`: the chart's test hooks (`helm test`) after an install or upgrade.

A failed (or timed-out) test fails the release, with helm's error summarised on one
bounded line in the row, and for this config only: like any permanent failure it is not
retried until the config changes (`failedConfig`). helm runs as the release's identity,
the tenant's for a tenant release (the `ClusterHelm` that installed it).

Callers: `herd.rollout.actions` (after a successful install or upgrade).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from herd.helm.client import ClusterHelm
from herd.plan.releases import DesiredRelease
from herd.plan.results import ReleaseResult, State
from herd.plan.results import now as _now
from herd.rollout.gates import Gates

TESTING = "running helm test"


async def chart_test(
    helm: ClusterHelm,
    desired: DesiredRelease,
    deployed: ReleaseResult,
    gates: Gates,
    report: Callable[[ReleaseResult], Awaitable[None]],
) -> ReleaseResult:
    """`deployed` when the chart has no enabled test or its test passed; else Failed."""
    test = desired.chart.test
    if test is None or not test.enabled:
        return deployed
    await report(replace(deployed, state=State.DEPLOYING, message=TESTING))
    async with gates.slot():
        failed = await helm.test(desired.key.namespace, desired.key.name, test.timeout)
    if failed is None:
        return deployed
    return replace(
        deployed,
        state=State.FAILED,
        message=f"helm test failed: {failed}",
        transient=False,
        finished=_now(),
    )
