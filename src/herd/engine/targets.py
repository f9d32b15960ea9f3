"""The engine's targets: kubeconfig files for the clusters of a pass, and the rows of the
clusters a Stack is not granted. Re-exported by `herd.engine.engine`.

Callers: `herd.engine.engine` (`Engine.apply`, `preview`, `delete`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from herd.api.v1 import SkippedCluster
from herd.engine.protocols import Inventory
from herd.errors import TransientError, describe
from herd.plan.clusters import Cluster, ClusterUnavailable
from herd.plan.desired import StackPlan
from herd.plan.results import ReleaseResult, State
from herd.plan.tenancy import Grants
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
