"""The engine's targets: kubeconfig files for the clusters of a pass, the clusters a Stack
left (to clean up), and the rows of the clusters a Stack is not granted. Re-exported by
`herd.engine.engine`.

Callers: `herd.engine.engine` (`Engine.apply`, `preview`, `delete`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence

from herd.api.status import SkippedCluster
from herd.engine.protocols import Inventory, StackResult
from herd.errors import TransientError, describe
from herd.plan.clusters import Cluster, ClusterUnavailable
from herd.plan.desired import StackPlan
from herd.plan.results import ReleaseResult, State
from herd.plan.tenancy import Grants, cluster_granted, granted_clusters
from herd.rollout.target import Target

logger = logging.getLogger("herd.engine.engine")

KEPT_MESSAGE = "left untouched; a release of this Stack already there is kept, no longer managed"


async def kubeconfig_targets(
    inventory: Inventory,
    concurrency: int,
    clusters: Sequence[Cluster],
    skipped: list[SkippedCluster],
    grants: Grants | None = None,
) -> list[Target]:
    """Kubeconfig files for `clusters` (fetched in parallel, `concurrency` at a time);
    unavailable ones go to `skipped` (sorted by cluster id), a failing Secret read
    included: one cluster's kubeconfig never fails the pass. `grants` (per cluster) go
    with each target: the rollout acts as the tenant when they are bounded."""
    slots = asyncio.Semaphore(concurrency)

    async def one(cluster: Cluster) -> Target | None:
        async with slots:
            try:
                path = await inventory.kubeconfig(cluster)
                return Target(cluster.id, path, grants.on_cluster(cluster) if grants else None)
            except ClusterUnavailable as unavailable:
                skipped.append(unavailable.skipped())
                return None
            except TransientError as error:  # one cluster's Secret: only that cluster waits
                skipped.append(SkippedCluster(cluster_id=cluster.id, reason=str(error)))
                return None
            except Exception as error:
                logger.exception("Unexpected error getting the kubeconfig of %s", cluster.id)
                reason = describe(error, doing="getting its kubeconfig")
                skipped.append(SkippedCluster(cluster_id=cluster.id, reason=reason))
                return None

    found = await asyncio.gather(*(one(c) for c in clusters))
    skipped.sort(key=lambda s: s.cluster_id)
    return [target for target in found if target is not None]


def not_granted_rows(plan: StackPlan, denied: Sequence[SkippedCluster]) -> list[ReleaseResult]:
    """One `NotGranted` row per release the Stack would have on each cluster not granted."""
    return [
        ReleaseResult(
            release.key,
            release.chart.name,
            State.NOT_GRANTED,
            message=f"{skip.reason}: {KEPT_MESSAGE}",
            config=release.config,
        )
        for skip in denied
        for release in plan.releases_for(skip.cluster_id)
    ]


async def departed_targets(
    inventory: Inventory,
    concurrency: int,
    clusters: Sequence[Cluster],
    result: StackResult,
    *,
    previous_targets: Collection[str] | None,
    grants: Grants | None,
) -> list[Target]:
    """The clusters the Stack left (neither targeted nor skipped in `result`), to clean up.

    With `previous_targets` (the record of clusters that may hold its releases), only
    those; a departed cluster that is not ready or has no kubeconfig now is named in
    `result.unreachable` (its releases stay for now). One no longer granted is not
    touched either: it joins `result.skipped` and `result.denied`.
    """
    keep = {c.id for c in result.targets} | {s.cluster_id for s in result.skipped}
    keep |= {c.name for c in clusters if c.id in keep}
    left = [
        c
        for c in clusters
        if c.id not in keep
        and c.name not in keep
        and (previous_targets is None or c.id in previous_targets)
    ]
    known = previous_targets is not None
    for cluster in left:
        if not cluster.ready and known:
            result.unreachable[cluster.id] = "cluster is not ready; its releases stay for now"
    if grants is not None and not grants.unrestricted:
        gone = [c for c in left if not cluster_granted(grants, c)]
        result.skipped += granted_clusters(grants, gone)[1]
        result.denied |= {c.id for c in gone}
        left = [c for c in left if cluster_granted(grants, c)]
    lost: list[SkippedCluster] = []
    departed = await kubeconfig_targets(
        inventory, concurrency, [c for c in left if c.ready], lost, grants
    )
    if known:
        result.unreachable.update({s.cluster_id: s.reason for s in lost})
    return departed
