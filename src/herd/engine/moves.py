"""One rollout's part of an engine pass: its rows and what it holds into the
`StackResult`. Callers: `herd.engine.engine` (`Engine.apply`).
"""

from __future__ import annotations

from collections.abc import Sequence

from herd.engine.protocols import StackResult
from herd.plan.desired import StackPlan
from herd.rollout.scheduler import Rollout
from herd.rollout.target import Target


async def run_rollout(
    result: StackResult,
    rollout: Rollout,
    plan: StackPlan | None,
    targets: Sequence[Target],
    holding: set[str],
) -> None:
    """One unstaged rollout of `plan` (None: remove) over `targets`, into `result`."""
    result.releases += await rollout.apply(plan, targets)
    merge_rollout(result, rollout, holding)


def merge_rollout(result: StackResult, rollout: Rollout, holding: set[str]) -> None:
    """A rollout's unreachable clusters into `result`, and what it holds into `holding`."""
    result.unreachable.update(rollout.unreachable)
    holding |= rollout.holding
