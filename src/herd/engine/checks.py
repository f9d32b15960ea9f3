"""The live `ClusterProbe` of the stages' checks (`herd.rollout.checks`): readiness from
the clusters' objects, NeuVector's verdicts from the add-on probe, metrics from each
cluster's Prometheus.

`LiveProbe` asks with each target's kubeconfig (read only). Readiness goes through
`herd.clusters.readiness.ReadinessReader` (a tenant release's objects only in its own
namespace); the security gate through `ScanSource` (the operator's
`herd.addons.probe.AddonProbe.image_verdicts`; the CLI has none: the gate then holds,
saying so); metrics through `MetricSource`: `PrometheusMetrics`, each cluster's Prometheus
(`herd.addons.prometheus`: the cluster's `herd.suse.com/prometheus-url`, else the
configured Service through its API server proxy), one instant query, its single value.
`for_clusters` gives the probe the pass's clusters (their Prometheus URL and name).

Callers: `herd.engine.wiring.build_engine`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from herd.addons.prometheus import PrometheusClient, PrometheusService, locate
from herd.api.checks import FailOnLevel
from herd.clusters.readiness import ReadinessReader, ReleaseToCheck
from herd.errors import TransientError
from herd.helm import worker
from herd.helm.environment import HelmEnvironment
from herd.plan.checks import Unready
from herd.plan.clusters import Cluster
from herd.plan.results import ReleaseResult
from herd.rollout.target import Target
from herd.settings import Settings
from herd.status.facts import FailOn, ImageVerdicts

DEFAULT_SERVICE = PrometheusService.parse(Settings.prometheus_service)


class ScanSource(Protocol):
    async def image_verdicts(
        self, cluster: str, kubeconfig: Path, releases: Sequence[ReleaseResult], fail_on: FailOn
    ) -> ImageVerdicts: ...


class MetricSource(Protocol):
    async def query(self, cluster: Cluster, kubeconfig: Path, query: str) -> float | None: ...


class PrometheusMetrics:
    """A `MetricSource` over `herd.addons.prometheus` (bounded in time and size)."""

    def __init__(self, service: PrometheusService = DEFAULT_SERVICE, timeout: float = 10.0) -> None:
        self._service = service
        self._client = PrometheusClient(timeout=timeout)

    async def query(self, cluster: Cluster, kubeconfig: Path, query: str) -> float | None:
        location = locate(cluster, self._service)
        result = await self._client.query_async(location, query, kubeconfig=kubeconfig)
        return result.single()


class LiveProbe:
    def __init__(
        self,
        readiness: ReadinessReader,
        scans: ScanSource | None = None,
        metrics: MetricSource | None = None,
        clusters: Mapping[str, Cluster] | None = None,
    ) -> None:
        self._readiness = readiness
        self._scans = scans
        self._metrics = metrics or PrometheusMetrics()
        self._clusters = dict(clusters or {})

    @classmethod
    def on(cls, env: HelmEnvironment) -> LiveProbe:
        """Readiness and each cluster's Prometheus; no NeuVector (a security check holds)."""
        return cls(ReadinessReader(env))

    def for_clusters(self, clusters: Sequence[Cluster]) -> LiveProbe:
        """This probe for a pass over `clusters` (where each one's Prometheus is)."""
        return LiveProbe(self._readiness, self._scans, self._metrics, {c.id: c for c in clusters})

    def warm(self) -> None:
        """The worker pool that parses manifests (readiness, security) starts while helm
        deploys: its first start imports Herd in a fork server, seconds on a loaded machine,
        which the first check round would otherwise wait for."""
        worker.pool().warm()

    async def unready(self, target: Target, releases: Sequence[ReleaseResult]) -> Unready | None:
        tenant = target.grants is not None and not target.grants.unrestricted
        wanted = [
            ReleaseToCheck(r.key.namespace, r.key.name, r.revision, tenant=tenant)
            for r in releases
            if r.revision is not None
        ]
        return await self._readiness.first_unready(target.cluster, target.kubeconfig, wanted)

    async def metric(self, target: Target, query: str) -> float | None:
        cluster = self._clusters.get(target.cluster)
        if cluster is None:
            raise TransientError(f"cluster {target.cluster} is not in this pass's inventory")
        return await self._metrics.query(cluster, target.kubeconfig, query)

    async def scan(
        self, target: Target, releases: Sequence[ReleaseResult], fail_on: FailOnLevel
    ) -> ImageVerdicts:
        if self._scans is None:
            raise TransientError("NeuVector's scan results are not read here (operator only)")
        level = FailOn.HIGH if fail_on is FailOnLevel.HIGH else FailOn.CRITICAL
        return await self._scans.image_verdicts(target.cluster, target.kubeconfig, releases, level)
