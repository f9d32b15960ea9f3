"""The operator's process-wide parts, free of kopf: one `Runtime` per process.

It holds the management-cluster client, the cluster inventory, the engine
(`herd.engine.wiring`) and its process-wide `Gates` (helm and cluster slots;
`Runtime.gates` is what graceful shutdown drains), the add-on probe, the index from
clusters to Stacks and the fleet metrics. Nothing in it belongs to one Stack: each Stack's
keeper loop, signals, status and deletion state live in its own object
(`herd.operator.stack.ManagedStack`), which calls back here for the shared parts:
`grants`, `patch_status`, `clear_approval`, `known_clusters`.

The inventory is polled, not watched: the sources live in a few namespaces, and a
namespaced list keeps RBAC to those namespaces (a kopf watch would be cluster-wide).
ClusterGrants are read fresh for every pass of a non-admin Stack (`grants`), and the fleet
poll (`watch_fleet`, started by `herd.operator.handlers`) compares them too, waking the
Stacks of the namespaces a grant change touches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client

from herd.addons.catalog import AddonCatalog
from herd.addons.probe import AddonProbe
from herd.addons.prometheus import PrometheusService
from herd.api import PLURAL, VERSION, StackStatus
from herd.api.grants import ClusterGrant
from herd.clusters.drift import DriftMemory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.sources import ClusterSource, RancherSource, SecretSource
from herd.engine.checks import PrometheusMetrics
from herd.engine.wiring import build_engine
from herd.errors import HerdError
from herd.helm.egress_guard import api_server_endpoint
from herd.helm.environment import HelmEnvironment
from herd.helm.workdir import keep_temp_files_in, prepare
from herd.kube.client import api_client_from_kubeconfig
from herd.kube.grants import list_grants
from herd.kube.journal import ManagementJournal
from herd.kube.lastgood import ManagementLastGood
from herd.kube.owned import ManagementOwnership
from herd.kube.shared import close_shared
from herd.names import APPROVE_ANNOTATION, GROUP
from herd.operator import metrics
from herd.operator.config import OperatorConfig
from herd.operator.events import Logger
from herd.operator.index import StackKey, TargetIndex
from herd.operator.leader import Tenure, lease_name
from herd.operator.statuswriter import Gone
from herd.plan.clusters import Cluster
from herd.plan.egress import EgressPolicy
from herd.plan.tenancy import Grants, Mode, affected_namespaces, grants_for
from herd.rollout.gates import Gates, Limits


def open_workdir(config: OperatorConfig) -> Path:
    """Empty the controller's work directory and keep this process's temp files in it.

    Called first thing at process start, before any API client exists: the kubernetes
    client writes a kubeconfig's CA, client certificate and key to temp files, removed
    only at a clean exit, so after a crash they must be where the next start removes them.
    """
    workdir = prepare(config.work_directory())
    keep_temp_files_in(workdir / "tmp")
    return workdir


class Stacks(Protocol):
    """The Stacks this process keeps (`herd.operator.stack.Stacks`), as the fleet poll
    wakes them."""

    def kept(self) -> Collection[StackKey]: ...

    def signal(self, key: StackKey) -> None: ...


class Runtime:
    def __init__(
        self,
        config: OperatorConfig,
        api: client.ApiClient,
        *,
        addons: AddonCatalog | None = None,
        workdir: Path | None = None,
        tenure: Tenure | None = None,
    ) -> None:
        self.config = config
        self.api = api
        # The leader's journal of helm operations (`herd.kube.journal`); None: not leading.
        self.journal = _journal(config, api, tenure) if tenure is not None else None
        self._objects = client.CustomObjectsApi(api)
        sources: list[ClusterSource] = (
            [RancherSource(api, config.rancher_namespaces)] if config.rancher_namespaces else []
        )
        sources.append(SecretSource(api, config.namespace))
        # One fixed directory per controller (C5), emptied at start: what a crashed run
        # left there (admin kubeconfigs among it) goes. HERD_SHARD is the HA part's field.
        self.workdir = workdir or prepare(config.work_directory())
        self.store = KubeconfigStore(
            api, self.workdir / "kubeconfigs", allow_exec=config.allow_exec_kubeconfigs
        )
        self.env = HelmEnvironment(self.workdir / "helm", settings=config.helm)
        self.addons = addons or AddonCatalog.from_cluster(
            api, config.namespace, config.addons_configmap
        )
        self.probe = AddonProbe(
            self.addons,
            self.env,
            concurrency=config.max_clusters,
            refresh_seconds=config.resync_seconds,
        )
        self.gates = Gates(helm=config.max_helm, clusters=config.max_clusters)
        self.inventory, self.engine = build_engine(
            sources,
            self.store,
            self.env,
            api=api,
            limits=Limits(clusters=config.max_clusters, helm=config.max_helm),
            addons=self.addons,
            gates=self.gates,
            manager="operator",
            stuck_seconds=config.stuck_seconds,
            ownership=ManagementOwnership(api, config.namespace),
            lastgood=ManagementLastGood(api, config.namespace),
            egress=_egress(config, api),
            drift=DriftMemory(),
            scans=self.probe,
            metrics=PrometheusMetrics(PrometheusService.parse(config.prometheus_service)),
            journal=self.journal,
        )
        self.index = TargetIndex()
        self.fleet = metrics.Fleet()
        self._clusters: dict[str, Cluster] = {}
        self._grants: dict[str, ClusterGrant] | None = None  # as the fleet poll last saw them

    @classmethod
    def create(cls, config: OperatorConfig, workdir: Path, tenure: Tenure | None = None) -> Runtime:
        """The process's Runtime, on the work directory `open_workdir` prepared."""
        return cls(config, api_client_from_kubeconfig(None), workdir=workdir, tenure=tenure)

    def close(self) -> None:
        self.probe.close()
        self.store.close()
        self.env.close()
        close_shared()  # the downstream clients (`herd.kube.shared`)
        self.api.close()  # type: ignore[no-untyped-call]

    # -- the fleet -----------------------------------------------------------------------

    def known_clusters(self) -> list[Cluster]:
        """The inventory as the last poll saw it."""
        return list(self._clusters.values())

    async def inventory_ids(self) -> set[str]:
        return {c.id for c in await self.inventory.clusters()}

    def bounded(self, namespace: str) -> bool:
        """Whether ClusterGrants bound the Stacks of `namespace` (not admin Stacks, not in
        open mode). A grant may select clusters by label: a relabel can grant or withdraw a
        cluster a bounded Stack targets, so the fleet poll wakes it on one."""
        config = self.config
        return config.tenancy is not Mode.OPEN and namespace != config.namespace

    async def grants(self, namespace: str) -> Grants:
        """What the Stacks of `namespace` were granted, read now (unrestricted for admin
        Stacks and in open mode). `TransientError` when the grants cannot be listed: a
        bounded Stack then waits, it never runs unbounded."""
        config = self.config
        if not self.bounded(namespace):
            return grants_for(namespace, [], admin_namespace=config.namespace, mode=config.tenancy)
        found, _ = await asyncio.to_thread(list_grants, self.api)
        addons = await self.addons.namespaces()  # reserved: no tenant chart goes there
        return grants_for(
            namespace, found, admin_namespace=config.namespace, addon_namespaces=addons
        )

    async def check_grants(self, logger: logging.Logger, stacks: Stacks) -> None:
        """Wake the Stacks of every namespace whose grants changed since the last poll.

        The first call only takes the baseline: `herd.operator.handlers.startup` makes it
        before kopf hands over any Stack, so a grant changed after a Stack's first pass
        read it is always a change against that baseline, never absorbed into it."""
        if self.config.tenancy is Mode.OPEN:
            return
        try:
            found, invalid = await asyncio.to_thread(list_grants, self.api)
        except HerdError as error:
            logger.warning("Cannot list ClusterGrants: %s", error)
            return
        current = {g.name: g for g in found}
        before = self._grants
        self._grants = current
        if before is None:
            for message in invalid:
                logger.warning("%s", message)
            return
        touched: set[str] = set()
        for name in set(current) | set(before):
            old, new = before.get(name), current.get(name)
            if old != new:
                touched |= affected_namespaces(*(_body(g) for g in (old, new)))
        for key in [k for k in stacks.kept() if k[0] in touched]:
            logger.info("ClusterGrants changed; reconciling Stack %s/%s", *key)
            stacks.signal(key)

    async def watch_fleet(self, logger: logging.Logger, stacks: Stacks) -> None:
        """Poll the inventory (and the grants) every few seconds; wake the Stacks a change
        affects."""
        while True:
            await self.check_grants(logger, stacks)
            try:
                current = {c.id: c for c in await self.inventory.clusters()}
            except HerdError as error:
                logger.warning("Cannot list clusters: %s", error)
                current = self._clusters
            for cluster_id in set(current) | set(self._clusters):
                before, after = self._clusters.get(cluster_id), current.get(cluster_id)
                if before != after:
                    for key in self.index.affected(before, after):
                        logger.info("Cluster %s changed; reconciling Stack %s/%s", cluster_id, *key)
                        stacks.signal(key)
            self._clusters = current
            await asyncio.sleep(self.config.fleet_seconds)

    # -- writes on a Stack ---------------------------------------------------------------

    async def clear_approval(self, key: StackKey, stage: str, logger: Logger) -> None:
        """Remove `herd.suse.com/approve=<stage>` once the approval is recorded in the
        status: an approval opens one gate once, the next rollout waits again. A failure
        is logged (the status already holds the approval)."""
        patch = [
            {"op": "test", "path": f"/metadata/annotations/{_APPROVE_PATH}", "value": stage},
            {"op": "remove", "path": f"/metadata/annotations/{_APPROVE_PATH}"},
        ]
        try:
            await asyncio.to_thread(
                self._objects.patch_namespaced_custom_object,
                *(GROUP, VERSION, key[0], PLURAL, key[1]),
                patch,
                _content_type="application/json-patch+json",
                _request_timeout=10,
            )
        except client.ApiException as error:
            logger.warning(
                "Cannot remove the approval annotation: %s %s", error.status, error.reason
            )

    async def patch_status(self, key: StackKey, status: StackStatus) -> None:
        """Replace the Stack's status; `Gone` when the Stack no longer exists."""
        body = status.model_dump(by_alias=True, exclude_none=True, mode="json")
        try:
            await asyncio.to_thread(
                self._objects.patch_namespaced_custom_object_status,
                *(GROUP, VERSION, key[0], PLURAL, key[1]),
                [{"op": "add", "path": "/status", "value": body}],
                _content_type="application/json-patch+json",
                _request_timeout=10,
            )
        except client.ApiException as error:
            if error.status == 404:
                raise Gone() from None
            raise


_APPROVE_PATH = APPROVE_ANNOTATION.replace("~", "~0").replace("/", "~1")


def _journal(config: OperatorConfig, api: client.ApiClient, tenure: Tenure) -> ManagementJournal:
    return ManagementJournal(
        api,
        config.namespace,
        lease_name(config.shard),
        tenure.holder,
        tenure.term,
        tenure.acquired,
        tenure.grace,
        gone=tenure.gone,
    )


def _egress(config: OperatorConfig, api: client.ApiClient) -> EgressPolicy:
    """The deny list for tenant repositories, with this controller's own API server."""
    server = api_server_endpoint(str(api.configuration.host or ""))
    return config.egress.with_api_servers([server] if server else [])


def _body(grant: ClusterGrant | None) -> dict[str, Any] | None:
    return None if grant is None else {"spec": {"namespaces": list(grant.spec.namespaces)}}
