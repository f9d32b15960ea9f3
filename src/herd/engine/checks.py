"""The live `ClusterProbe` of the stages' checks (`herd.rollout.checks`): readiness from
the clusters' objects, NeuVector's verdicts from the add-on probe, metrics from each
cluster's Prometheus.

`LiveProbe` asks with each target's kubeconfig (read only). Readiness goes through
`herd.clusters.readiness.ReadinessReader` (a tenant release's objects only in its own
namespace); the security gate through `ScanSource` (the operator's
`herd.addons.probe.AddonProbe.image_verdicts`; the CLI has none: the gate then holds,
saying so); metrics through `MetricSource`.

Metric checks need a Prometheus client. None is wired yet (the Prometheus client module
is another part's work): without one, each metric evaluation fails with
`NO_PROMETHEUS`, so a Stack with metric checks halts at its first stage instead of
passing unjudged.

Callers: `herd.engine.wiring.build_engine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from herd.api.checks import FailOnLevel
from herd.clusters.readiness import ReadinessReader, ReleaseToCheck
from herd.errors import TransientError
from herd.plan.checks import Unready
from herd.plan.results import ReleaseResult
from herd.rollout.target import Target
from herd.status.facts import FailOn

NO_PROMETHEUS = "no Prometheus client in this Herd build: metric checks cannot be evaluated"


class ScanSource(Protocol):
    async def image_verdicts(
        self, cluster: str, kubeconfig: Path, releases: Sequence[ReleaseResult], fail_on: FailOn
    ) -> tuple[list[str], list[str]]: ...


class MetricSource(Protocol):
    async def query(self, cluster: str, kubeconfig: Path, query: str) -> float | None: ...


class LiveProbe:
    def __init__(
        self,
        readiness: ReadinessReader,
        scans: ScanSource | None = None,
        metrics: MetricSource | None = None,
    ) -> None:
        self._readiness = readiness
        self._scans = scans
        self._metrics = metrics

    async def unready(self, target: Target, releases: Sequence[ReleaseResult]) -> Unready | None:
        tenant = target.grants is not None and not target.grants.unrestricted
        wanted = [
            ReleaseToCheck(r.key.namespace, r.key.name, r.revision, tenant=tenant)
            for r in releases
            if r.revision is not None
        ]
        return await self._readiness.first_unready(target.cluster, target.kubeconfig, wanted)

    async def metric(self, target: Target, query: str) -> float | None:
        if self._metrics is None:
            raise TransientError(NO_PROMETHEUS)
        return await self._metrics.query(target.cluster, target.kubeconfig, query)

    async def scan(
        self, target: Target, releases: Sequence[ReleaseResult], fail_on: FailOnLevel
    ) -> tuple[list[str], list[str]]:
        if self._scans is None:
            raise TransientError("NeuVector's scan results are not read here (operator only)")
        level = FailOn.HIGH if fail_on is FailOnLevel.HIGH else FailOn.CRITICAL
        return await self._scans.image_verdicts(target.cluster, target.kubeconfig, releases, level)
