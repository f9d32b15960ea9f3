"""Where clusters come from in a management cluster: Rancher and kubeconfig Secrets.

Callers: `herd.clusters.inventory.Inventory` (built by the operator and the CLI) lists every source
on
each pass. `herd.clusters.files.FileSource` is the third source, for the CLI. Each source
reads with the synchronous kubernetes client in a worker thread, so it can run on kopf's
event loop. RBAC needed: list on `clusters.provisioning.cattle.io` and get/list on Secrets in
the configured namespaces, and list on `clusters.management.cattle.io`.

Cost of a pass (`herd.clusters.versions`): the Rancher source makes one list of Rancher's
management Clusters (their conditions say whether each agent is connected; none once the
type proved not served) and two list calls per namespace (the Clusters, and their
kubeconfig Secrets metadata-only, so the store reuses each file by resourceVersion without
a GET); the Secret source one metadata-only list, plus one full list when a Secret was
added or changed. No call per cluster, and no listing that grows with machines: the Secret
listing is cut to Opaque Secrets server-side (`RANCHER_SECRET_FIELDS`), which leaves out
Cluster API's per-machine Secrets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from kubernetes import client

from herd.clusters.objects import (
    CLUSTER_SECRET_SELECTOR,
    RANCHER_GROUP,
    RANCHER_MANAGEMENT_GROUP,
    RANCHER_MANAGEMENT_VERSION,
    RANCHER_NAMESPACES,
    RANCHER_PLURAL,
    RANCHER_SECRET_FIELDS,
    RANCHER_SECRET_SELECTOR,
    RANCHER_VERSION,
    rancher_cluster,
    secret_cluster,
    secret_key,
)
from herd.clusters.versions import SecretKeys, versions_of, with_secret_version
from herd.errors import TransientError
from herd.kube.client import API_ERRORS, NOT_FOUND, api_error_summary, read_json
from herd.plan.clusters import Cluster

logger = logging.getLogger(__name__)
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


class ClusterSource(Protocol):
    """Anything that can list clusters; a failure to list is a `TransientError`."""

    async def list_clusters(self) -> list[Cluster]: ...


class RancherSource:
    """Rancher's `provisioning.cattle.io/v1` Clusters (see `herd.clusters.objects`).

    Each Cluster names its kubeconfig Secret (`status.clientSecretName`, else
    `<name>-kubeconfig`); the store reads it by that name. The Cluster does not know the
    Secret's resource version: a metadata-only list of the namespace's Opaque Secrets
    labelled `cluster.x-k8s.io/cluster-name` (as Rancher labels them) supplies it, and only
    the names some Cluster refers to are kept. A Secret that listing misses keeps an empty
    version, and the store reads it to learn it.
    """

    def __init__(
        self, api: client.ApiClient, namespaces: Sequence[str] = RANCHER_NAMESPACES
    ) -> None:
        self._api = api
        self._namespaces = tuple(namespaces)
        self._unlisted: set[str] = set()  # namespaces whose Secrets could not be listed
        # False once the management Cluster type proved not served (no Rancher here).
        self._management_served = True
        self._management_failed = False  # a failure was logged (once, until it works)

    async def list_clusters(self) -> list[Cluster]:
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[Cluster]:
        custom = client.CustomObjectsApi(self._api)
        management = self._management_clusters(custom)
        clusters: list[Cluster] = []
        for namespace in self._namespaces:
            what = f"Rancher clusters ({RANCHER_GROUP}) in namespace {namespace}"
            body = _list_or_raise(
                what,
                custom.list_namespaced_custom_object,
                RANCHER_GROUP,
                RANCHER_VERSION,
                namespace,
                RANCHER_PLURAL,
            )
            listed = [
                rancher_cluster(item, management.get(_cluster_name(item)))
                for item in body.get("items") or []
            ]
            versions = self._secret_versions(namespace) if listed else {}
            clusters.extend(with_secret_version(cluster, versions) for cluster in listed)
        return clusters

    def _management_clusters(self, custom: client.CustomObjectsApi) -> dict[str, Any]:
        """Rancher's management Clusters by name; none when they cannot be read, and then
        readiness comes from the provisioning Clusters alone (logged once)."""
        if not self._management_served:
            return {}
        try:
            body = read_json(
                custom.list_cluster_custom_object,
                RANCHER_MANAGEMENT_GROUP,
                RANCHER_MANAGEMENT_VERSION,
                RANCHER_PLURAL,
                # From the API server's watch cache: these objects are large (the whole
                # cluster's status), and a poll's worth of staleness is fine.
                resource_version="0",
            )
        except API_ERRORS as error:
            if getattr(error, "status", None) == NOT_FOUND:
                # Provisioning Clusters without Rancher (a test bed, a copy): ask no more.
                self._management_served = False
                logger.info("No Rancher management clusters served here: readiness comes "
                            "from the provisioning Clusters only")  # fmt: skip
                return {}
            if not self._management_failed:
                logger.warning(
                    "cannot list Rancher management clusters (%s): %s; readiness comes from "
                    "the provisioning Clusters only, so a disconnected agent goes unnoticed",
                    RANCHER_MANAGEMENT_GROUP,
                    api_error_summary(error),
                )
                self._management_failed = True
            return {}
        self._management_failed = False
        return {
            str((item.get("metadata") or {}).get("name", "")): item
            for item in body.get("items") or []
        }

    def _secret_versions(self, namespace: str) -> dict[str, str]:
        """The kubeconfig Secrets' resourceVersions; none when they cannot be listed: the
        listing only saves reads, so the store then reads each Secret as it would anyway."""
        try:
            secrets = _list_or_raise(
                f"kubeconfig Secrets ({RANCHER_SECRET_SELECTOR}) in namespace {namespace}",
                client.CoreV1Api(self._api).list_namespaced_secret,
                namespace,
                label_selector=RANCHER_SECRET_SELECTOR,
                field_selector=RANCHER_SECRET_FIELDS,
                _headers=METADATA_ONLY,
            )
        except TransientError as error:
            if namespace not in self._unlisted:
                logger.warning("%s; each kubeconfig Secret is read instead", error)
                self._unlisted.add(namespace)
            return {}
        self._unlisted.discard(namespace)
        return versions_of(secrets.get("items") or [])

    def __repr__(self) -> str:
        return f"RancherSource(namespaces={list(self._namespaces)})"


class SecretSource:
    """Kubeconfig Secrets labelled `herd.suse.com/cluster=true` in one namespace.

    Listed metadata-only; the Secrets' data (for the names of their keys) is listed only
    when one was added or changed since the last full listing (`SecretKeys`).
    """

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._api = api
        self._namespace = namespace
        self._keys = SecretKeys()

    async def list_clusters(self) -> list[Cluster]:
        return await asyncio.to_thread(self._list)

    def _list(self, metadata_only: bool = True) -> list[Cluster]:
        body = _list_or_raise(
            f"cluster Secrets ({CLUSTER_SECRET_SELECTOR}) in namespace {self._namespace}",
            client.CoreV1Api(self._api).list_namespaced_secret,
            self._namespace,
            label_selector=CLUSTER_SECRET_SELECTOR,
            **({"_headers": METADATA_ONLY} if metadata_only else {}),
        )
        items = body.get("items") or []
        if metadata_only:
            listed = versions_of(items)
            if not self._keys.current(listed):
                return self._list(metadata_only=False)
            return [secret_cluster(item, self._keys.key(*_name_version(item))) for item in items]
        keys = {}
        for item in items:
            name, version = _name_version(item)
            keys[name] = (version, secret_key(item))
        self._keys.replace(keys)
        clusters = [secret_cluster(item) for item in items]
        # Secret values were in the response; keep no reference to them.
        items.clear()
        return clusters

    def __repr__(self) -> str:
        return f"SecretSource(namespace={self._namespace!r})"


def _cluster_name(item: dict[str, Any]) -> str:
    return str((item.get("status") or {}).get("clusterName") or "")


def _name_version(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return str(metadata.get("name", "")), str(metadata.get("resourceVersion", ""))


def _list_or_raise(what: str, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return read_json(call, *args, **kwargs)
    except API_ERRORS as error:
        summary = api_error_summary(error)
        hint = ""
        if getattr(error, "status", None) == NOT_FOUND:
            hint = " (is the resource type served here?)"
        raise TransientError(f"cannot list {what}: {summary}{hint}") from None
