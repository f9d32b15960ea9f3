"""The operator's long-lived parts and its reconcile loop, free of kopf.

One `Runtime` per process holds the management-cluster client, the cluster inventory,
the engine and the index from clusters to Stacks. Each Stack has one keeper loop (run
by a kopf daemon, `herd.operator.handlers`): it reconciles, then sleeps until the
resync interval passes, a retry is due, or a signal arrives (spec change, cluster
inventory change). One loop per Stack means one reconcile per Stack at a time; a spec
change during a rollout is handled by finishing the rollout, then reconciling again
with the new spec ("finish then redo": helm is never interrupted half-way by an edit).

Status is written while a rollout runs (throttled), and only when it changed, so a
no-op resync does not churn the object or its watchers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from kubernetes import client

from herd.addons import AddonCatalog, AddonProbe, carry_over, enrich
from herd.api import GROUP, PLURAL, VERSION, StackStatus, parse_stack
from herd.api.v1 import Stack
from herd.clusters.index import TargetIndex
from herd.clusters.inventory import Inventory
from herd.clusters.kube import api_client_from_kubeconfig
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.model import Cluster
from herd.clusters.sources import ClusterSource, RancherSource, SecretSource
from herd.engine import Engine, StackResult
from herd.errors import HerdError, SpecError, TransientError
from herd.helm import HelmEnvironment
from herd.operator import metrics
from herd.operator.config import OperatorConfig
from herd.plan import Action
from herd.results import ReleaseResult, State, now
from herd.rollout import Limits
from herd.status import Phase, failed_status, stack_status
from herd.values import KubeValuesReader

StackKey = tuple[str, str]
Logger = logging.Logger | logging.LoggerAdapter[Any]


class Events(Protocol):
    """Posts Events on the Stack (kopf's daemon loggers do not post their lines)."""

    def normal(self, reason: str, message: str) -> None: ...

    def warning(self, reason: str, message: str) -> None: ...


STATUS_INTERVAL = 1.0


class Runtime:
    def __init__(
        self,
        config: OperatorConfig,
        api: client.ApiClient,
        *,
        addons: AddonCatalog | None = None,
    ) -> None:
        self.config = config
        self.api = api
        self._objects = client.CustomObjectsApi(api)
        sources: list[ClusterSource] = (
            [RancherSource(api, config.rancher_namespaces)] if config.rancher_namespaces else []
        )
        sources.append(SecretSource(api, config.namespace))
        self.store = KubeconfigStore(api)
        self.inventory = Inventory(sources, self.store)
        self.env = HelmEnvironment()
        self.addons = addons or AddonCatalog.from_cluster(
            api, config.namespace, config.addons_configmap
        )
        self.probe = AddonProbe(self.addons, self.env, concurrency=config.max_clusters)
        self.engine = Engine(
            self.inventory,
            self.env,
            limits=Limits(clusters=config.max_clusters, helm=config.max_helm),
            values=KubeValuesReader(api),
            addons=self.addons,
        )
        self.index = TargetIndex()
        self.fleet = metrics.Fleet()
        self._signals: dict[StackKey, asyncio.Event] = {}
        self._clusters: dict[str, Cluster] = {}

    @classmethod
    def create(cls, config: OperatorConfig) -> Runtime:
        return cls(config, api_client_from_kubeconfig(None))

    def close(self) -> None:
        self.probe.close()
        self.store.close()
        self.env.close()
        self.api.close()  # type: ignore[no-untyped-call]

    # -- signals -------------------------------------------------------------------------

    def signal(self, key: StackKey) -> None:
        """Ask the Stack's keeper to reconcile now (or right after its current pass)."""
        self._signals.setdefault(key, asyncio.Event()).set()

    async def watch_fleet(self, logger: logging.Logger) -> None:
        """Compare the inventory every few seconds; wake the Stacks a change affects.

        Polling, not watches: the sources live in a few namespaces, and a namespaced
        list keeps RBAC to those namespaces (a kopf watch would be cluster-wide).
        """
        while True:
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
        """Reconcile the Stack in `body` (a live view) until `stopped`."""
        key: StackKey = (body["metadata"]["namespace"], body["metadata"]["name"])
        event = self._signals.setdefault(key, asyncio.Event())
        while not stopped:
            event.clear()
            try:
                delay = await self.reconcile(body, logger, events)
            except Exception:
                # A bug or an unforeseen API answer must not end the Stack's loop for good.
                logger.exception("Reconcile failed; retrying in %.0fs", self.config.retry_seconds)
                delay = self.config.retry_seconds
            waiter = asyncio.ensure_future(event.wait())
            stopper = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=delay, return_when="FIRST_COMPLETED")
            finally:
                waiter.cancel()
                stopper.cancel()

    async def reconcile(self, body: Any, logger: Logger, events: Events | None = None) -> float:
        """One pass; returns how long to wait before the next one."""
        meta = body["metadata"]
        key: StackKey = (meta["namespace"], meta["name"])
        generation = meta.get("generation")
        previous = _previous_status(body)
        try:
            stack = parse_stack(dict(body))
            self.index.set(key, stack.spec.targets)
            writer = _ProgressWriter(
                self, stack, previous, generation, logger=logger, events=events
            )
            result = await self.engine.apply(
                stack,
                writer.progress,
                previous_targets=_known_clusters(previous),
            )
        except SpecError as error:
            logger.error("Invalid Stack, nothing deployed or changed: %s", error)
            unchanged = previous is not None and previous.message == str(error)
            if events is not None and not unchanged:  # one Event per new verdict, not per resync
                events.warning("InvalidSpec", f"Nothing deployed or changed: {error}")
            await self.write_status(
                key, failed_status(str(error), generation, now(), previous), previous
            )
            self.fleet.set(key, Phase.FAILED, {})
            return self.config.resync_seconds
        except TransientError as error:
            logger.warning("Will retry in %.0fs: %s", self.config.retry_seconds, error)
            return self.config.retry_seconds
        status = writer.final(result)
        seen = await self.probe.observe(result, self.inventory)
        status = enrich(
            status,
            result,
            seen.scans,
            seen.agents,
            fail_on=seen.fail_on,
            previous=previous,
            now=now(),
        )
        await self.write_status(key, status, writer.written or previous)
        self.fleet.set(key, status.phase, status.deployment_counts)
        retry = any(
            r.transient and r.state in (State.FAILED, State.UNREACHABLE) for r in result.releases
        )
        return self.config.retry_seconds if retry or result.skipped else self.config.resync_seconds

    async def delete(self, body: Any, logger: Logger) -> None:
        """Uninstall everything the Stack deployed; TransientError keeps the finalizer."""
        meta = body["metadata"]
        key: StackKey = (meta["namespace"], meta["name"])
        result = await self.engine.delete(*key, lambda r: _log_event(r, logger, None))
        left = [r for r in result.releases if r.state in (State.FAILED, State.UNREACHABLE)]
        for skipped in result.skipped:
            logger.warning(
                "Cluster %s is unusable; its releases stay: %s", skipped.cluster_id, skipped.reason
            )
        # A cluster the Stack targeted may hold its releases: wait for it. Any other
        # unreadable cluster of the fleet should not hold every deletion hostage.
        previous = _previous_status(body)
        targeted = set(previous.target_clusters) if previous else set()
        for cluster, reason in result.unreachable.items():
            if cluster not in targeted:
                logger.warning("Cluster %s could not be checked for releases: %s", cluster, reason)
        stuck = sorted(c for c in result.unreachable if c in targeted)
        if left or stuck:
            first = (
                f"{left[0].chart} on {left[0].key.cluster}: {left[0].message}"
                if left
                else f"cluster {stuck[0]} unreachable: {result.unreachable[stuck[0]]}"
            )
            raise TransientError(
                f"{len(left)} releases and {len(stuck)} clusters not cleaned up yet; {first}",
                delay=self.config.retry_seconds,
            )
        self.index.remove(key)
        self.fleet.forget(key)
        self._signals.pop(key, None)

    async def write_status(
        self, key: StackKey, status: StackStatus, previous: StackStatus | None
    ) -> None:
        if previous is not None and _comparable(previous) == _comparable(status):
            return
        body = status.model_dump(by_alias=True, exclude_none=True, mode="json")
        await asyncio.to_thread(
            self._objects.patch_namespaced_custom_object_status,
            *(GROUP, VERSION, key[0], PLURAL, key[1]),
            [{"op": "add", "path": "/status", "value": body}],
            _content_type="application/json-patch+json",
        )


class _ProgressWriter:
    """Turns rollout progress into Events, metrics and throttled status writes."""

    def __init__(
        self,
        runtime: Runtime,
        stack: Stack,
        previous: StackStatus | None,
        generation: int | None,
        *,
        logger: Logger,
        events: Events | None,
    ) -> None:
        self._runtime = runtime
        self._events = events
        self._key: StackKey = (stack.namespace, stack.name)
        self._previous = previous
        self._generation = generation
        self._logger = logger
        self._results: dict[Any, ReleaseResult] = {}
        self._active = False
        self._last_write = 0.0
        self.written: StackStatus | None = None
        self.targets: list[str] = []
        self.chart_count = 0

    async def progress(self, result: ReleaseResult) -> None:
        self._results[result.key] = result
        _log_event(result, self._logger, self._events)
        metrics.record(result)
        # A pass that changes nothing writes nothing until its end.
        self._active = self._active or result.state in (State.DEPLOYING, State.UNINSTALLING)
        if self._active and time.monotonic() - self._last_write >= STATUS_INTERVAL:
            self._last_write = time.monotonic()
            status = self._status(list(self._results.values()), [], phase=Phase.DEPLOYING)
            await self._runtime.write_status(self._key, status, self.written or self._previous)
            self.written = status

    def final(self, result: StackResult) -> StackStatus:
        self.targets = [c.id for c in result.targets]
        self.chart_count = result.chart_count
        return self._status(result.releases, result.skipped)

    def _status(
        self, releases: list[ReleaseResult], skipped: list[Any], phase: str | None = None
    ) -> StackStatus:
        status = stack_status(
            releases,
            targets=self.targets or (self._previous.target_clusters if self._previous else []),
            skipped=skipped,
            chart_count=self.chart_count or (self._previous.chart_count if self._previous else 0),
            generation=self._generation,
            now=now(),
            previous=self._previous,
            max_rows=self._runtime.config.max_rows,
            phase=phase,
        )
        return carry_over(status, self._previous)


_VERBS = {Action.INSTALL: "Installed", Action.UPGRADE: "Upgraded", Action.RECOVER: "Recovered"}


def _log_event(result: ReleaseResult, logger: Logger, events: Events | None) -> None:
    """Log a release's change and post it as an Event naming cluster and chart.

    Without `events` (kopf handlers, whose loggers post INFO+ lines themselves), the log
    line is the Event.
    """
    release = f"{result.key.namespace}/{result.key.name}"
    where = f"chart {result.chart} (release {release}) on cluster {result.key.cluster}"
    if result.state is State.DEPLOYED and result.action in _VERBS and result.started:
        reason, message = (
            _VERBS[result.action],
            f"{_VERBS[result.action]} {where}, revision {result.revision}",
        )
        logger.info("%s", message)
        if events is not None:
            events.normal(reason, message)
    elif result.state is State.UNINSTALLED:
        logger.info("Uninstalled %s", where)
        if events is not None:
            events.normal("Uninstalled", f"Uninstalled {where}")
    elif result.state in (State.FAILED, State.UNREACHABLE):
        message = f"{result.state.value} {where}: {result.message}"
        logger.warning("%s", message)
        if events is not None:
            events.warning("Release" + result.state.value, message)


def _known_clusters(previous: StackStatus | None) -> set[str] | None:
    """Clusters that may hold the Stack's releases, as its last status knows them.

    None (no status yet, e.g. after a restore) makes the engine check every cluster.
    """
    if previous is None:
        return None
    return (
        set(previous.target_clusters)
        | {s.cluster_id for s in previous.skipped_clusters}
        | {r.cluster_id for r in previous.deployments}
    )


def _previous_status(body: Any) -> StackStatus | None:
    raw = body.get("status") or {}
    if not raw.get("phase"):
        return None
    try:
        return StackStatus.model_validate(dict(raw))
    except ValueError:
        return None


def _comparable(status: StackStatus) -> dict[str, Any]:
    """A status without timestamps: equal means writing it would change nothing."""
    data = status.model_dump(mode="json")
    for row in data["deployments"]:
        row.pop("last_updated", None)
    for condition in data["conditions"]:
        condition.pop("last_transition_time", None)
    return data
