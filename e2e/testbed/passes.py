"""What the operator writes after a pass, for e2e tests that drive the engine directly.

`status_of` is the keeper's sequence (`herd.operator.keeper`): `stack_status` for the
pass, then the add-on probe and `enrich` with everything the probe saw (scans, agents,
GPU facts, Herd's dashboards and alerts). Callers: `e2e/test_addons.py`,
`e2e/test_gpu.py`, `e2e/test_insights.py`.
"""

from __future__ import annotations

from herd.addons.probe import AddonProbe
from herd.api import StackStatus
from herd.engine.protocols import Inventory, StackResult
from herd.plan.results import now
from herd.status.addons import enrich
from herd.status.build import stack_status


async def status_of(result: StackResult, probe: AddonProbe, inventory: Inventory) -> StackStatus:
    status = stack_status(
        result.releases,
        targets=[c.id for c in result.targets],
        skipped=result.skipped,
        chart_count=result.chart_count,
        generation=1,
        now=now(),
    )
    seen = await probe.observe(result, inventory)
    return enrich(
        status,
        result,
        seen.scans,
        seen.agents,
        fail_on=seen.fail_on,
        gpus=seen.gpus,
        release_gpus=seen.release_gpus,
        insights=seen.insights,
    )
