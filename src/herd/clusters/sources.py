"""Where clusters come from in a management cluster: Rancher and kubeconfig Secrets.

Callers: `herd.clusters.Inventory` (built by the operator and the CLI) lists every source on
each pass. `herd.clusters.files.FileSource` is the third source, for the CLI. Each source
reads with the synchronous kubernetes client in a worker thread, so it can run on kopf's
event loop. RBAC needed: get/list/watch on `clusters.provisioning.cattle.io` and on Secrets,
in the configured namespaces only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from kubernetes import client

from herd.clusters.kube import API_ERRORS, NOT_FOUND, api_error_summary, read_json
from herd.clusters.model import Cluster
from herd.clusters.objects import (
    CLUSTER_SECRET_SELECTOR,
    RANCHER_GROUP,
    RANCHER_NAMESPACE,
    RANCHER_PLURAL,
    RANCHER_VERSION,
    rancher_cluster,
    secret_cluster,
)
from herd.errors import TransientError


class ClusterSource(Protocol):
    """Anything that can list clusters; a failure to list is a `TransientError`."""

    async def list_clusters(self) -> list[Cluster]: ...


class RancherSource:
    """Rancher's `provisioning.cattle.io/v1` Clusters (see `herd.clusters.objects`).

    The kubeconfig refs carry no resource version (the Cluster object does not know its
    Secret's): the kubeconfig store reads the Secret to learn it.
    """

    def __init__(
        self, api: client.ApiClient, namespaces: Sequence[str] = (RANCHER_NAMESPACE,)
    ) -> None:
        self._api = api
        self._namespaces = tuple(namespaces)

    async def list_clusters(self) -> list[Cluster]:
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[Cluster]:
        custom = client.CustomObjectsApi(self._api)
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
            clusters.extend(rancher_cluster(item) for item in body.get("items") or [])
        return clusters

    def __repr__(self) -> str:
        return f"RancherSource(namespaces={list(self._namespaces)})"


class SecretSource:
    """Kubeconfig Secrets labelled `herd.suse.com/cluster=true` in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._api = api
        self._namespace = namespace

    async def list_clusters(self) -> list[Cluster]:
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[Cluster]:
        body = _list_or_raise(
            f"cluster Secrets ({CLUSTER_SECRET_SELECTOR}) in namespace {self._namespace}",
            client.CoreV1Api(self._api).list_namespaced_secret,
            self._namespace,
            label_selector=CLUSTER_SECRET_SELECTOR,
        )
        items = body.get("items") or []
        clusters = [secret_cluster(item) for item in items]
        # Secret values were in the response; keep no reference to them.
        items.clear()
        return clusters

    def __repr__(self) -> str:
        return f"SecretSource(namespace={self._namespace!r})"


def _list_or_raise(what: str, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return read_json(call, *args, **kwargs)
    except API_ERRORS as error:
        summary = api_error_summary(error)
        hint = ""
        if getattr(error, "status", None) == NOT_FOUND:
            hint = " (is the resource type served here?)"
        raise TransientError(f"cannot list {what}: {summary}{hint}") from None
