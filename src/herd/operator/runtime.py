"""The operator's process wiring, free of kopf: one `Runtime` per process.

It holds the management-cluster client, the cluster inventory, the engine and its
process-wide `Gates` (helm and cluster slots; `Runtime.gates` is what graceful shutdown
drains), the index from clusters to Stacks, and one `Keeper` per Stack
(`herd.operator.keeper`). `herd.operator.handlers` calls it: `keep` from the per-Stack
daemon, `signal` on create/update/resume, `delete` from the delete handler
(`herd.operator.teardown`), `watch_fleet` (a poll loop) from startup.

The inventory is polled, not watched: the sources live in a few namespaces, and a
namespaced list keeps RBAC to those namespaces (a kopf watch would be cluster-wide).
ClusterGrants are read fresh for every pass of a non-admin Stack (`grants`), and the fleet
poll compares them too, waking the Stacks of the namespaces a grant change touches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from kubernetes import client

from herd.addons.catalog import AddonCatalog
from herd.addons.probe import AddonProbe
from herd.api import PLURAL, VERSION, StackStatus
from herd.api.grants import ClusterGrant
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.sources import ClusterSource, RancherSource, SecretSource
from herd.engine.engine import Engine
from herd.errors import HerdError
from herd.helm.egress_guard import api_server_endpoint
from herd.helm.environment import HelmEnvironment
from herd.helm.workdir import keep_temp_files_in, prepare
from herd.kube.chart_secrets import KubeSourcesReader
from herd.kube.client import api_client_from_kubeconfig
from herd.kube.grants import list_grants
from herd.kube.owned import ManagementOwnership
from herd.kube.values_from import KubeValuesReader
from herd.names import APPROVE_ANNOTATION, GROUP
from herd.operator import metrics, teardown
from herd.operator.config import OperatorConfig
from herd.operator.events import Events, Logger
from herd.operator.index import StackKey, TargetIndex
from herd.operator.keeper import Keeper
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


class Runtime:
    def __init__(
        self,
        config: OperatorConfig,
        api: client.ApiClient,
        *,
        addons: AddonCatalog | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.config = config
        self.api = api
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
        self.inventory = Inventory(sources, self.store)
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
        self.engine = Engine(
            self.inventory,
            self.env,
            limits=Limits(clusters=config.max_clusters, helm=config.max_helm),
            values=KubeValuesReader(api),
            sources=KubeSourcesReader(api),
            addons=self.addons,
            gates=self.gates,
            manager="operator",
            stuck_seconds=config.stuck_seconds,
            ownership=ManagementOwnership(api, config.namespace),
            egress=_egress(config, api),
        )
        self.index = TargetIndex()
        self.fleet = metrics.Fleet()
        self.deletion_attempts: dict[StackKey, int] = {}
        self._signals: dict[StackKey, asyncio.Event] = {}
        # Values of the annotations that wake a keeper (WAKE_ANNOTATIONS), as last seen.
        self._annotations: dict[tuple[StackKey, str], str] = {}
        self._clusters: dict[str, Cluster] = {}
        self._keepers: dict[StackKey, Keeper] = {}
        self._running: dict[StackKey, asyncio.Event] = {}  # set when the loop has ended
        self._deleting: set[StackKey] = set()
        self._statuses: dict[StackKey, StackStatus] = {}
        self._posters: dict[StackKey, Events] = {}  # the daemons' Event posters
        self._grants: dict[str, ClusterGrant] | None = None  # as the fleet poll last saw them

    @classmethod
    def create(cls, config: OperatorConfig, workdir: Path) -> Runtime:
        """The process's Runtime, on the work directory `open_workdir` prepared."""
        return cls(config, api_client_from_kubeconfig(None), workdir=workdir)

    def close(self) -> None:
        self.probe.close()
        self.store.close()
        self.env.close()
        self.api.close()  # type: ignore[no-untyped-call]

    # -- signals and the fleet -----------------------------------------------------------

    def pause(self, paused: bool) -> None:
        """Start no new helm work (the leader Lease is not renewed), or resume it and
        reconcile every Stack: a pass made while paused left its releases pending."""
        if paused:
            self.gates.pause()
            return
        self.gates.resume()
        for event in self._signals.values():
            event.set()

    def signal(self, key: StackKey) -> None:
        """Ask the Stack's keeper to reconcile now (or right after its current pass)."""
        self._signals.setdefault(key, asyncio.Event()).set()

    def annotation_new(self, key: StackKey, annotation: str, value: str | None) -> bool:
        """Whether a watch event shows a value of a wake annotation this process has not
        acted on (kopf's own diff ignores our group's annotations: `handlers`)."""
        return bool(value) and self._annotations.get((key, annotation)) != value

    def annotation_seen(self, key: StackKey, annotation: str, value: str | None) -> None:
        """A new value of `herd.suse.com/approve` (a gate waits for it) or
        `herd.suse.com/reconcile-at` (retry held failures now) wakes the Stack's keeper at
        once; the same value again does nothing."""
        if value and self.annotation_new(key, annotation, value):
            self.signal(key)
        if value:
            self._annotations[(key, annotation)] = value

    def known_clusters(self) -> list[Cluster]:
        """The inventory as the last poll saw it."""
        return list(self._clusters.values())

    async def inventory_ids(self) -> set[str]:
        return {c.id for c in await self.inventory.clusters()}

    async def grants(self, namespace: str) -> Grants:
        """What the Stacks of `namespace` were granted, read now (unrestricted for admin
        Stacks and in open mode). `TransientError` when the grants cannot be listed: a
        bounded Stack then waits, it never runs unbounded."""
        config = self.config
        if config.tenancy is Mode.OPEN or namespace == config.namespace:
            return grants_for(namespace, [], admin_namespace=config.namespace, mode=config.tenancy)
        found, _ = await asyncio.to_thread(list_grants, self.api)
        addons = await self.addons.namespaces()  # reserved: no tenant chart goes there
        return grants_for(
            namespace, found, admin_namespace=config.namespace, addon_namespaces=addons
        )

    async def _watch_grants(self, logger: logging.Logger) -> None:
        """Wake the Stacks of every namespace whose grants changed since the last poll."""
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
        for key in [k for k in self._signals if k[0] in touched]:
            logger.info("ClusterGrants changed; reconciling Stack %s/%s", *key)
            self.signal(key)

    async def watch_fleet(self, logger: logging.Logger) -> None:
        """Poll the inventory (and the grants) every few seconds; wake the Stacks a change
        affects."""
        while True:
            await self._watch_grants(logger)
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
                        self.signal(key)
            self._clusters = current
            await asyncio.sleep(self.config.fleet_seconds)

    # -- the keeper loop -----------------------------------------------------------------

    async def keep(self, body: Any, stopped: Any, logger: Logger, events: Events) -> None:
        """Reconcile the Stack in `body` (a live view) until `stopped` or its deletion."""
        key: StackKey = (body["metadata"]["namespace"], body["metadata"]["name"])
        event = self._signals.setdefault(key, asyncio.Event())
        ended = self._running[key] = asyncio.Event()
        self._posters[key] = events
        keeper = self._keepers[key] = Keeper(self, body, logger, events)
        keeper.writer.start()
        try:
            while not stopped and key not in self._deleting:
                event.clear()
                delay = await finish_pass(keeper.reconcile(body), logger)
                if key in self._deleting:
                    break
                waiter = asyncio.ensure_future(event.wait())
                stopper = asyncio.ensure_future(stopped.wait())
                try:
                    await asyncio.wait(
                        {waiter, stopper}, timeout=delay, return_when="FIRST_COMPLETED"
                    )
                finally:
                    waiter.cancel()
                    stopper.cancel()
        except Gone:
            logger.info("The Stack is gone; its keeper stops")
        finally:
            if keeper.writer.written is not None:
                self._statuses[key] = keeper.writer.written
            await keeper.writer.close()
            self._keepers.pop(key, None)
            ended.set()

    async def stop_keeping(self, key: StackKey, timeout: float) -> bool:
        """No pass of the Stack starts any more; True once none is running."""
        self._deleting.add(key)
        self.signal(key)
        ended = self._running.get(key)
        if ended is None:
            return True
        try:
            await asyncio.wait_for(ended.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def delete(self, body: Any, logger: Logger) -> None:
        """Uninstall the Stack's releases; TransientError (with a delay) keeps the finalizer."""
        await teardown.delete(self, body, logger)

    def forget(self, key: StackKey) -> None:
        """The Stack is gone: drop everything this process kept about it."""
        self.index.remove(key)
        self.fleet.forget(key)
        self._signals.pop(key, None)
        for seen in [seen for seen in self._annotations if seen[0] == key]:
            del self._annotations[seen]
        self._running.pop(key, None)
        self._statuses.pop(key, None)
        self._posters.pop(key, None)
        self._deleting.discard(key)
        self.deletion_attempts.pop(key, None)

    def events(self, key: StackKey) -> Events | None:
        """The Stack's Event poster, once its keeper ran in this process."""
        return self._posters.get(key)

    # -- status --------------------------------------------------------------------------

    def last_status(self, key: StackKey) -> StackStatus | None:
        keeper = self._keepers.get(key)
        if keeper is not None and keeper.writer.written is not None:
            return keeper.writer.written
        return self._statuses.get(key)

    def remember_status(self, key: StackKey, status: StackStatus) -> None:
        self._statuses[key] = status

    async def clear_approval(self, key: StackKey, stage: str, logger: Logger) -> None:
        """Remove `herd.suse.com/approve=<stage>` once the approval is recorded in the
        status: an approval opens one gate once, the next rollout waits again. A failure
        is logged (the status already holds the approval)."""
        # the same value set again is a new approval
        self._annotations.pop((key, APPROVE_ANNOTATION), None)
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


def _egress(config: OperatorConfig, api: client.ApiClient) -> EgressPolicy:
    """The deny list for tenant repositories, with this controller's own API server."""
    server = api_server_endpoint(str(api.configuration.host or ""))
    return config.egress.with_api_servers([server] if server else [])


def _body(grant: ClusterGrant | None) -> dict[str, Any] | None:
    return None if grant is None else {"spec": {"namespaces": list(grant.spec.namespaces)}}


async def finish_pass(work: Coroutine[Any, Any, float], logger: Logger) -> float:
    """Run a pass to its end even when the daemon is cancelled (kopf cancels a Stack's
    daemon on deletion and at shutdown): helm is never killed half-way by that. Graceful
    shutdown makes a pass short by draining `Runtime.gates`; deletion waits for it."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            logger.info("Letting the Stack's current pass finish before stopping")
        while not task.done():  # the loop ends (and deletion may go on) only after it
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                continue
        raise
