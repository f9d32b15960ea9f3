"""`status.placement` from the pass's placement decision, and what the next pass needs of
it. Pure.

`with_placement` writes the pick (`herd.plan.placement.PlacementDecision`) into the status:
the picked clusters, the reason, each other candidate with why it was not picked, and when
the pick last changed. A write without a decision (a pass in flight, a Stack without
pickN) keeps the previous section, or drops it when the Stack no longer asks for pickN.

`remembered` is the other way: the clusters picked last time (placement is sticky), the
GPUs the Stack was last seen to request on one cluster (the `need` of a fit), and the
clusters still leaving (make-before-break), from the previous status.
Callers: `herd.status.pipeline` (`with_placement`), `herd.operator.keeper`
(`remembered`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from herd.api.status import PlacementStatus, SkippedCluster, StackStatus
from herd.plan.placement import Placed, PlacementDecision
from herd.status.build import MESSAGE_LIMIT, clip


def with_placement(
    status: StackStatus,
    decision: PlacementDecision | None,
    previous: StackStatus | None,
    now: datetime,
    *,
    wanted: bool = True,
) -> StackStatus:
    """`status` with its `placement` section (see the module); `wanted`: the Stack has pickN."""
    before = previous.placement if previous is not None else None
    if decision is None:
        return status.model_copy(update={"placement": before if wanted else None})
    changed = before is None or before.clusters != list(decision.picked)
    since = now.isoformat() if before is None or changed else before.last_change_time
    section = PlacementStatus(
        clusters=list(decision.picked),
        reason=clip(decision.reason, MESSAGE_LIMIT),
        not_picked=[
            SkippedCluster(cluster_id=cluster, reason=clip(why, MESSAGE_LIMIT))
            for cluster, why in decision.not_picked.items()
        ],
        last_change_time=since,
        leaving=list(decision.leaving),
    )
    return status.model_copy(update={"placement": section})


def remembered(previous: StackStatus | None) -> Placed:
    """The clusters picked last time, the GPUs the Stack's rows requested on one cluster
    at most (0 when unknown), and the clusters still leaving."""
    if previous is None:
        return Placed()
    per_cluster: dict[str, int] = defaultdict(int)
    for row in previous.deployments:
        per_cluster[row.cluster_id] += row.gpu_requests or 0
    section = previous.placement
    return Placed(
        tuple(section.clusters) if section is not None else (),
        max(per_cluster.values(), default=0),
        tuple(section.leaving) if section is not None else (),
    )
