"""All clusters Herd can deploy to, from every configured source, with their kubeconfigs.

Callers: the operator (sources: Rancher and/or kubeconfig Secrets in the management
cluster) and the CLI (kubeconfig files) build one `Inventory` and hand it to the engine,
which lists clusters once per pass, resolves each Stack's targets against them
(`herd.plan.targets`) and asks for each target's kubeconfig file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.sources import ClusterSource
from herd.plan.clusters import Cluster

logger = logging.getLogger(__name__)


class Inventory:
    """The union of the sources' clusters; the first source to list an id wins."""

    def __init__(self, sources: Sequence[ClusterSource], store: KubeconfigStore) -> None:
        self._sources = tuple(sources)
        self._store = store

    @property
    def store(self) -> KubeconfigStore:
        return self._store

    async def clusters(self) -> list[Cluster]:
        """Every source's clusters, ordered by id; a source that cannot list fails the call
        (with its `TransientError`), since a partial fleet would look like departures."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(source.list_clusters()) for source in self._sources]
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        chosen: dict[str, tuple[Cluster, ClusterSource]] = {}
        for source, task in zip(self._sources, tasks, strict=True):
            for cluster in task.result():
                if cluster.id in chosen:
                    first, by = chosen[cluster.id]
                    logger.warning(
                        "Cluster id %s is listed twice: %s from %r is used, %s from %r ignored",
                        cluster.id,
                        first.kubeconfig.describe(),
                        by,
                        cluster.kubeconfig.describe(),
                        source,
                    )
                    continue
                chosen[cluster.id] = (cluster, source)
        return sorted((cluster for cluster, _ in chosen.values()), key=lambda c: c.id)

    async def kubeconfig(self, cluster: Cluster) -> Path:
        """The cluster's kubeconfig file; see `KubeconfigStore.path` for the errors."""
        return await self._store.path(cluster)
