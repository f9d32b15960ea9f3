"""The engine's targets: kubeconfig files for the clusters of a pass, the clusters a Stack
left (to clean up), the rows of the clusters a Stack is not granted, and the clusters
`targets.placement.pickN` picks. Re-exported by `herd.engine.engine`.

Callers: `herd.engine.engine` (`Engine.apply`, `preview`, `delete`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from herd.api.status import SkippedCluster
from herd.api.targets import Placement
from herd.engine.protocols import Inventory, StackResult
from herd.errors import TransientError, describe
from herd.plan.clusters import Cluster, ClusterUnavailable
from herd.plan.decide import Action
from herd.plan.desired import StackPlan
from herd.plan.placement import GpuSupply, Placed, pick
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


SupplyReader = Callable[
    [Mapping[str, Path], Mapping[str, Collection[tuple[str, str]]]],
    Awaitable[Mapping[str, GpuSupply]],
]


async def place_targets(
    placement: Placement,
    result: StackResult,
    reachable: list[Target],
    *,
    read: SupplyReader,
    placed: Placed | None,
) -> tuple[list[Target], list[Target]]:
    """`targets.placement.pickN`: (the reachable targets it picks, the leaving ones).

    The candidates are `reachable`: ready, granted, with a kubeconfig, so placement never
    reaches beyond a tenant's grant. The others leave `result.targets` and `members`, so
    the pass cleans them up like clusters the Stack left (their rows say why), except the
    leaving clusters (`herd.plan.placement`): they stay in `result.targets`, so they are
    not departed, and `herd.engine.moves.settle_moves` decides when they are cleaned up.
    `placed`: what the previous pass left of placement (`herd.status.placement`).
    """
    assert result.plan is not None
    plan = result.plan
    kubeconfigs = {t.cluster: t.kubeconfig for t in reachable}
    own = {c: {(r.key.namespace, r.key.name) for r in plan.releases_for(c)} for c in kubeconfigs}
    supply = await read(kubeconfigs, own)
    placed = placed or Placed()
    decision = pick(
        placement, sorted(kubeconfigs), supply, placed.previous, placed.need, leaving=placed.leaving
    )
    result.placement = decision
    others = set(kubeconfigs) - set(decision.picked)
    dropped = others - set(decision.leaving)
    result.targets = [c for c in result.targets if c.id not in dropped]
    result.members = [c for c in result.members if c.id not in others]
    picked = [t for t in reachable if t.cluster in decision.picked]
    return picked, [t for t in reachable if t.cluster in decision.leaving]


def placement_notes(result: StackResult) -> None:
    """The rows of releases removed from clusters placement no longer picks say so."""
    decision = result.placement
    if decision is None:
        return
    for i, row in enumerate(result.releases):
        why = decision.not_picked.get(row.key.cluster)
        if why is not None and row.action is Action.UNINSTALL and not row.message:
            note = f"moved by targets.placement ({decision.reason}); not picked: {why}"
            result.releases[i] = replace(row, message=note)
