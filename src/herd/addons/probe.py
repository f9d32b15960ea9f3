"""After a pass: look at the add-ons in each target cluster (the I/O behind `enrich`).

`AddonProbe.observe(result, inventory)` visits the pass's target clusters, a bounded
number at a time, with each cluster's own kubeconfig:

- each deployed release's images and workloads, from its rendered manifest
  (its release Secret at revision N, read directly: `ClusterHelm.manifest`, one helm
  client per cluster; cached per cluster, release and revision, since a
  revision's manifest never changes);
- `security: enabled`: NeuVector's scan report through the API server's service proxy
  (`herd.addons.neuvector`), once NeuVector's own release is deployed there;
- `observability: enabled`: whether the agent release's workloads are ready;
- for every Stack: the GPUs of the cluster's nodes, each release's `nvidia.com/gpu`
  requests (from the same manifests) and, for the releases that request some, their
  utilization from dcgm-exporter (`herd.addons.gpu.probe`, at most once per
  `refresh_seconds` per cluster).

It never raises for one cluster's trouble: a cluster that cannot be asked gets an
Unavailable scan or no agent health, with a reason fit for the status. Callers: the
operator's runtime after each pass, then `herd.status.addons`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client

from herd.addons.catalog import AddonCatalog
from herd.addons.config import Credentials, NeuVectorApi
from herd.addons.gpu.dcgm import release_gpus
from herd.addons.gpu.probe import GpuProbe
from herd.addons.images import ManifestFacts, Workload, bounded_manifest_facts
from herd.addons.insights import INSIGHTS, insights_counts
from herd.addons.neuvector import NeuVectorClient, NeuVectorError, ServiceProxy
from herd.api.v1 import Toggle
from herd.errors import HerdError, TransientError
from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmEnvironment
from herd.kube.client import (
    API_ERRORS,
    NOT_FOUND,
    api_client_from_kubeconfig,
    api_error_summary,
    read_json,
)
from herd.plan.clusters import Cluster, ClusterUnavailable
from herd.plan.results import ReleaseResult, State
from herd.status.addons import PassResult
from herd.status.facts import (
    AGENT,
    NEUVECTOR,
    AgentHealth,
    ClusterGpus,
    ClusterScan,
    FailOn,
    ImageVerdicts,
    Observation,
    ReleaseRef,
    ScanReport,
    ScanState,
)

logger = logging.getLogger(__name__)

ManifestKey = tuple[str, str, str, int]  # cluster, namespace, release, revision
_CACHE_LIMIT = 50000  # small facts; every release of every Stack


class Inventory(Protocol):
    """Kubeconfig files of clusters (`herd.clusters.inventory.Inventory`, the CLI's own)."""

    async def kubeconfig(self, cluster: Cluster) -> Path: ...


class AddonProbe:
    def __init__(
        self,
        catalog: AddonCatalog,
        env: HelmEnvironment,
        *,
        concurrency: int = 10,
        timeout: float = 10.0,
        refresh_seconds: float = 300.0,
    ) -> None:
        self._catalog = catalog
        self._env = env
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout
        self._manifests: dict[ManifestKey, ManifestFacts] = {}
        self._gpus = GpuProbe(refresh_seconds=refresh_seconds, timeout=timeout)

    async def observe(self, result: PassResult, inventory: Inventory) -> Observation:
        config = self._catalog.config
        plan = result.plan
        if plan is None:
            return Observation()
        security = config is not None and plan.spec.security_toggle is Toggle.ENABLED
        observability = config is not None and plan.spec.observability is Toggle.ENABLED
        observation = Observation(fail_on=config.api.fail_on if config else FailOn.CRITICAL)
        async with asyncio.TaskGroup() as group:
            for cluster in result.targets:
                releases = [r for r in result.releases if r.key.cluster == cluster.id]
                group.create_task(
                    self._cluster(
                        cluster,
                        releases=releases,
                        inventory=inventory,
                        observation=observation,
                        api=config.api if config and security else None,
                        observability=observability,
                    )
                )
        return observation

    def close(self) -> None:
        self._manifests.clear()

    @property
    def fail_on(self) -> FailOn:
        """The add-on configuration's level for the rows' `securityScan`."""
        config = self._catalog.config
        return config.api.fail_on if config else FailOn.CRITICAL

    async def image_verdicts(
        self, cluster: str, kubeconfig: Path, releases: Sequence[ReleaseResult], fail_on: FailOn
    ) -> ImageVerdicts:
        """For a stage's security check (`herd.rollout.checks`): the images of the deployed
        `releases` that NeuVector failed at or above `fail_on`, those not scanned yet, and
        the cluster's scan (as `observe` makes it). Raises `TransientError` when NeuVector
        cannot be asked (or is not configured)."""
        config = self._catalog.config
        if config is None:
            raise TransientError("NeuVector is not configured (no add-on configuration)")
        deployed = [r for r in releases if r.state is State.DEPLOYED]
        helm = ClusterHelm(self._env, cluster, kubeconfig)
        try:
            facts = {(r.key.namespace, r.key.name): await self._facts(helm, r) for r in deployed}
        finally:
            helm.close()
        scan = await self._scan(cluster, kubeconfig, config.api, releases, facts)
        if scan.report is None:
            raise TransientError(scan.problem or "NeuVector scan results unavailable")
        images = sorted({i for f in facts.values() if f is not None for i in f.images})
        found = {image: scan.report.images.get(image) for image in images}
        failed = [i for i, r in found.items() if r is not None and r.fails(fail_on)]
        return ImageVerdicts(failed, [i for i, r in found.items() if r is None], scan)

    # -- one cluster ----------------------------------------------------------------------

    async def _cluster(
        self,
        cluster: Cluster,
        *,
        releases: Sequence[ReleaseResult],
        inventory: Inventory,
        observation: Observation,
        api: NeuVectorApi | None,
        observability: bool,
    ) -> None:
        async with self._slots:
            try:
                kubeconfig = Path(await inventory.kubeconfig(cluster))
            except HerdError as error:  # ClusterUnavailable, or TransientError from the store
                reason = error.reason if isinstance(error, ClusterUnavailable) else str(error)
                if api is not None:
                    observation.scans[cluster.id] = ClusterScan(
                        cluster.id, state=ScanState.UNAVAILABLE, problem=reason
                    )
                observation.gpus[cluster.id] = ClusterGpus(problem=reason)
                return
            deployed = [r for r in releases if r.state is State.DEPLOYED]
            helm = ClusterHelm(self._env, cluster.id, kubeconfig)
            try:
                facts = {
                    (r.key.namespace, r.key.name): await self._facts(helm, r) for r in deployed
                }
                failed = {  # a failed install's GPUs explain a timeout: its latest revision
                    (r.key.namespace, r.key.name): await self._facts(helm, r, latest=True)
                    for r in releases
                    if r.state is State.FAILED and not r.held
                }
            finally:
                helm.close()
            await self._gpu_facts(cluster.id, kubeconfig, {**facts, **failed}, observation)
            if api is not None:
                scan = await self._scan(cluster.id, kubeconfig, api, releases, facts)
                observation.scans[cluster.id] = scan
            agent = next((r for r in deployed if r.chart == AGENT), None)
            if observability and agent is not None:
                agent_facts = facts.get((agent.key.namespace, agent.key.name))
                observation.agents[cluster.id] = await self._agent(
                    cluster.id, kubeconfig, agent_facts
                )
            insights = next((r for r in deployed if r.chart == INSIGHTS), None)
            if observability and insights is not None:
                counts = await asyncio.to_thread(
                    _insights, kubeconfig, insights.key.namespace, insights.key.name, self._timeout
                )
                if counts is not None:
                    observation.insights[cluster.id] = counts

    async def _gpu_facts(
        self,
        cluster: str,
        kubeconfig: Path,
        facts: dict[ReleaseRef, ManifestFacts | None],
        observation: Observation,
    ) -> None:
        observation.gpus[cluster] = await asyncio.to_thread(self._gpus.nodes, cluster, kubeconfig)
        demands = {ref: f.gpus for ref, f in facts.items() if f is not None}
        wanted = any(d.total for d in demands.values())
        samples = (
            await asyncio.to_thread(self._gpus.exporter, cluster, kubeconfig) if wanted else []
        )
        for (namespace, name), demand in demands.items():
            gpus = release_gpus(demand, samples, namespace)
            observation.release_gpus[(cluster, namespace, name)] = gpus

    async def _facts(
        self, helm: ClusterHelm, release: ReleaseResult, *, latest: bool = False
    ) -> ManifestFacts | None:
        """`latest`: the release's last revision, whatever its state (not kept)."""
        revision = None if latest else release.revision
        key = (release.key.cluster, release.key.namespace, release.key.name, revision or 0)
        if not latest and key in self._manifests:
            return self._manifests[key]
        manifest = await helm.manifest(release.key.namespace, release.key.name, revision)
        if manifest is None:
            return None
        facts = await bounded_manifest_facts(manifest, release.key.namespace)
        if latest:
            return facts
        if len(self._manifests) >= _CACHE_LIMIT:
            self._manifests.clear()
        self._manifests[key] = facts
        return facts

    async def _scan(
        self,
        cluster: str,
        kubeconfig: Path,
        api: NeuVectorApi,
        releases: Sequence[ReleaseResult],
        facts: dict[ReleaseRef, ManifestFacts | None],
    ) -> ClusterScan:
        images = {ref: f.images for ref, f in facts.items() if f is not None}
        neuvector = next((r for r in releases if r.chart == NEUVECTOR), None)
        if neuvector is None or neuvector.state is not State.DEPLOYED:
            state = neuvector.state if neuvector else State.PENDING
            waiting = state in (State.PENDING, State.DEPLOYING)
            return ClusterScan(
                cluster,
                images,
                state=ScanState.PENDING if waiting else ScanState.UNAVAILABLE,
                problem=f"NeuVector release {state.value.lower()}",
            )
        credentials = self._catalog.credentials
        if not credentials.can_read_scans:
            return ClusterScan(
                cluster,
                images,
                state=ScanState.UNAVAILABLE,
                problem="no neuvector.password in the add-on Secret",
            )
        try:
            report = await asyncio.to_thread(
                _scan_report, kubeconfig, api, credentials, self._timeout
            )
        except NeuVectorError as error:
            logger.info("NeuVector scan results unavailable on cluster %s: %s", cluster, error)
            return ClusterScan(cluster, images, state=ScanState.UNAVAILABLE, problem=str(error))
        return ClusterScan(cluster, images, report=report)

    async def _agent(
        self, cluster: str, kubeconfig: Path, facts: ManifestFacts | None
    ) -> AgentHealth:
        if facts is None:
            return AgentHealth(cluster, ready=False, detail="agent manifest unreadable")
        if not facts.workloads:
            return AgentHealth(cluster, ready=False, detail="agent release has no workloads")
        try:
            unready = await asyncio.to_thread(
                _unready_workloads, kubeconfig, facts.workloads, self._timeout
            )
        except _UnusableKubeconfig as error:
            return AgentHealth(cluster, ready=False, detail=str(error))
        except API_ERRORS as error:
            return AgentHealth(cluster, ready=False, detail=api_error_summary(error))
        if unready:
            return AgentHealth(cluster, ready=False, detail=f"not ready: {', '.join(unready)}")
        return AgentHealth(cluster, ready=True)


class _UnusableKubeconfig(TransientError):
    """The kubeconfig file the store handed out does not make a client (never its content)."""


def _api_client(kubeconfig: Path) -> client.ApiClient:
    try:
        api = api_client_from_kubeconfig(kubeconfig)
    except Exception as error:  # ConfigException, YAML or file errors
        raise _UnusableKubeconfig(f"kubeconfig unusable ({type(error).__name__})") from None
    return api


def _scan_report(
    kubeconfig: Path, api: NeuVectorApi, credentials: Credentials, timeout: float
) -> ScanReport:
    try:
        kube = _api_client(kubeconfig)
    except Exception as error:  # a kubeconfig the store accepted but the client cannot use
        raise NeuVectorError(
            f"cannot use the cluster's kubeconfig ({type(error).__name__})"
        ) from None
    try:
        proxy = ServiceProxy(kube, api.namespace, api.service, timeout)
        nv = NeuVectorClient(proxy, credentials.neuvector_username, credentials.neuvector_password)
        return nv.scan_report()
    finally:
        kube.close()  # type: ignore[no-untyped-call]


def _insights(
    kubeconfig: Path, namespace: str, release: str, timeout: float
) -> tuple[int, int] | None:
    """Herd's dashboards and alert rules of `release` as the cluster has them now (None
    when they cannot be read). No PrometheusRule CRD: no rules."""
    selector = f"app.kubernetes.io/instance={release}"
    try:
        kube = _api_client(kubeconfig)
    except _UnusableKubeconfig:
        return None
    try:
        configmaps = read_json(
            client.CoreV1Api(kube).list_namespaced_config_map,
            namespace,
            label_selector=f"{selector},grafana_dashboard=1",
            _request_timeout=timeout,
        )
        try:
            rules = read_json(
                client.CustomObjectsApi(kube).list_namespaced_custom_object,
                *("monitoring.coreos.com", "v1", namespace, "prometheusrules"),
                label_selector=selector,
                _request_timeout=timeout,
            )
        except client.ApiException as error:
            if error.status != NOT_FOUND:
                raise
            rules = {}
        return insights_counts(configmaps.get("items") or [], rules.get("items") or [])
    except API_ERRORS as error:
        logger.info("Cannot read Herd's dashboards in %s: %s", namespace, api_error_summary(error))
        return None
    finally:
        kube.close()  # type: ignore[no-untyped-call]


def _unready_workloads(
    kubeconfig: Path, workloads: Sequence[Workload], timeout: float
) -> list[str]:
    kube = _api_client(kubeconfig)
    try:
        apps = client.AppsV1Api(kube)
        read = {
            "Deployment": apps.read_namespaced_deployment_status,
            "StatefulSet": apps.read_namespaced_stateful_set_status,
            "DaemonSet": apps.read_namespaced_daemon_set_status,
        }
        unready = []
        for workload in workloads:
            body = read_json(
                read[workload.kind], workload.name, workload.namespace, _request_timeout=timeout
            )
            if not workload_ready(workload.kind, body):
                unready.append(f"{workload.kind} {workload.namespace}/{workload.name}")
        return unready
    finally:
        kube.close()  # type: ignore[no-untyped-call]


def workload_ready(kind: str, body: dict[str, Any]) -> bool:
    """Deployment: Available; StatefulSet: all replicas ready; DaemonSet: ready everywhere."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if kind == "Deployment":
        conditions = status.get("conditions") or []
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)
    if kind == "StatefulSet":
        return int(status.get("readyReplicas") or 0) >= int(spec.get("replicas", 1))
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        return int(status.get("numberReady") or 0) >= desired
    return False
