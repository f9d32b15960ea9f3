"""Where a Stack's ownership record (`herd.plan.ownership`) is kept: two `OwnershipStore`s.

- `ManagementOwnership` (the operator): one ConfigMap per Stack in the controller's own
  namespace on the management cluster, `herd-owned-<stack uid>`, labelled with the Stack's
  namespace and name. Tenants cannot write there. The leader is the only writer, so the
  record is cached in memory after the first read: a pass with nothing new reads nothing.
  A write that fails is logged and the cached record stays the old one (the pass is not
  failed); a read that fails is a `TransientError` (the pass, or the deletion, retries).
- `DownstreamOwnership` (the CLI, which has no management cluster): one ConfigMap per
  Stack and cluster, in namespace `herd-system` of that cluster (created when missing),
  written with the kubeconfig the user gave, which only cluster admins hold. A cluster
  whose record cannot be read is `unknown`: nothing is removed there, nothing rewritten.

Every call blocks in a worker thread. Callers: `herd.operator.runtime` and `herd.cli.fleet`
build them; `herd.engine.engine` uses them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.errors import TransientError
from herd.kube.client import NOT_FOUND, api_error_summary, read_json
from herd.kube.core import CoreApi
from herd.kube.shared import shared_client
from herd.names import OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL
from herd.plan.ownership import RECORD_KEY, Owned, Releases, StackRef, decode, encode
from herd.plan.tenancy import RECORDS_NAMESPACE

logger = logging.getLogger(__name__)
DOWNSTREAM_NAMESPACE = RECORDS_NAMESPACE  # no tenant may use it (`herd.plan.tenancy`)
_TIMEOUT = 15


def record_name(stack: StackRef, prefix: str = "herd-owned") -> str:
    """`<prefix>-<uid>`, or (no uid: the CLI) a digest of namespace and name."""
    if stack.uid:
        return f"{prefix}-{stack.uid}"
    digest = hashlib.sha256(f"{stack.namespace}/{stack.name}".encode()).hexdigest()[:20]
    return f"{prefix}-{digest}"


def config_map(
    name: str, namespace: str, stack: StackRef, data: Mapping[str, str]
) -> dict[str, Any]:
    """A Herd record ConfigMap of `stack` (labelled with its namespace and name)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "herd",
                OWNER_NAMESPACE_LABEL: stack.namespace,
                OWNER_NAME_LABEL: stack.name[:63],
            },
        },
        "data": dict(data),
    }


def read_data(api: CoreApi, name: str, namespace: str, key: str) -> str | None:
    """The `key` of a record ConfigMap; None when there is no ConfigMap."""
    try:
        body = read_json(api.read_namespaced_config_map, name, namespace, _request_timeout=_TIMEOUT)
    except ApiException as error:
        if error.status == NOT_FOUND:
            return None
        raise
    return str((body.get("data") or {}).get(key) or "")


def write_config_map(api: CoreApi, body: dict[str, Any]) -> None:
    """Replace a record ConfigMap, or create it."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        api.replace_namespaced_config_map(
            name, namespace, cast(Any, body), _request_timeout=_TIMEOUT
        )
    except ApiException as error:
        if error.status != NOT_FOUND:
            raise
        api.create_namespaced_config_map(namespace, cast(Any, body), _request_timeout=_TIMEOUT)


def delete_config_map(api: CoreApi, name: str, namespace: str) -> None:
    try:
        api.delete_namespaced_config_map(name, namespace, _request_timeout=_TIMEOUT)
    except ApiException as error:
        if error.status != NOT_FOUND:
            raise


async def drop_config_map(api: CoreApi, name: str, namespace: str, what: str) -> None:
    """Delete a record ConfigMap (gone already is fine); `TransientError` naming `what`."""
    try:
        await asyncio.to_thread(delete_config_map, api, name, namespace)
    except Exception as error:
        raise TransientError(
            f"cannot delete {what} {namespace}/{name}: {api_error_summary(error)}"
        ) from None


def _read(api: CoreApi, stack: StackRef, namespace: str) -> dict[str, Releases] | None:
    """The stored record; None when there is none yet."""
    text = read_data(api, record_name(stack), namespace, RECORD_KEY)
    return None if text is None else decode(text)


def _write(api: CoreApi, stack: StackRef, namespace: str, data: str) -> None:
    write_config_map(api, config_map(record_name(stack), namespace, stack, {RECORD_KEY: data}))


def _delete(api: CoreApi, stack: StackRef, namespace: str) -> None:
    delete_config_map(api, record_name(stack), namespace)


class ManagementOwnership:
    """The operator's store: one ConfigMap per Stack in `namespace` (HERD_NAMESPACE)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._core = CoreApi(api)
        self._namespace = namespace
        self._cache: dict[str, dict[str, Releases] | None] = {}  # record name -> record

    async def load(self, stack: StackRef, clusters: Mapping[str, Path]) -> Owned:
        name = record_name(stack)
        if name not in self._cache:
            try:
                self._cache[name] = await asyncio.to_thread(
                    _read, self._core, stack, self._namespace
                )
            except Exception as error:
                raise TransientError(
                    f"cannot read the Stack's ownership record ConfigMap {self._namespace}/"
                    f"{name}: {api_error_summary(error)}"
                ) from None
        found = self._cache[name]
        if found is None:  # no record yet: this Stack adopts what it finds at its state
            return Owned({}, migrating=frozenset(clusters))
        return Owned({c: dict(r) for c, r in found.items()})

    async def save(
        self,
        stack: StackRef,
        before: Owned,
        after: Mapping[str, Releases],
        clusters: Mapping[str, Path],
    ) -> None:
        name = record_name(stack)
        if self._cache.get(name) == after and name in self._cache:
            return
        try:
            await asyncio.to_thread(
                _write, self._core, stack, self._namespace, encode(stack, after)
            )
        except Exception as error:  # the pass is not failed; the old record stays
            logger.warning(
                "Cannot write the ownership record %s/%s of Stack %s/%s: %s",
                self._namespace,
                name,
                stack.namespace,
                stack.name,
                api_error_summary(error),
            )
            return
        self._cache[name] = {c: dict(r) for c, r in after.items()}

    async def drop(self, stack: StackRef, clusters: Mapping[str, Path]) -> None:
        """After the Stack's deletion completed. Raises `TransientError` on failure."""
        name = record_name(stack)
        await drop_config_map(self._core, name, self._namespace, "the ownership record")
        self._cache.pop(name, None)


class DownstreamOwnership:
    """The CLI's store: one ConfigMap per Stack in each cluster's `herd-system`."""

    async def load(self, stack: StackRef, clusters: Mapping[str, Path]) -> Owned:
        found = await asyncio.gather(
            *(asyncio.to_thread(self._read_one, stack, path) for path in clusters.values()),
            return_exceptions=True,
        )
        owned = Owned()
        migrating, unknown = set(), set()
        for cluster, record in zip(clusters, found, strict=True):
            if isinstance(record, BaseException):
                logger.warning(
                    "Cannot read the ownership record on cluster %s: %s",
                    cluster,
                    api_error_summary(record) if isinstance(record, Exception) else record,
                )
                unknown.add(cluster)
            elif record is None:
                migrating.add(cluster)
            elif cluster in record:
                owned.releases[cluster] = record[cluster]
        owned.migrating, owned.unknown = frozenset(migrating), frozenset(unknown)
        return owned

    async def save(
        self,
        stack: StackRef,
        before: Owned,
        after: Mapping[str, Releases],
        clusters: Mapping[str, Path],
    ) -> None:
        async def one(cluster: str, path: Path) -> None:
            mine = dict(after.get(cluster, {}))
            if cluster in before.unknown or (not mine and cluster in before.migrating):
                return
            if mine == before.on(cluster) and cluster not in before.migrating:
                return
            try:
                await asyncio.to_thread(self._write_one, stack, cluster, path, mine)
            except Exception as error:
                logger.warning(
                    "Cannot write the ownership record on cluster %s: %s",
                    cluster,
                    api_error_summary(error),
                )

        await asyncio.gather(*(one(c, p) for c, p in clusters.items()))

    async def drop(self, stack: StackRef, clusters: Mapping[str, Path]) -> None:
        await self.save(stack, Owned(), {}, clusters)

    @staticmethod
    def _read_one(stack: StackRef, path: Path) -> dict[str, Releases] | None:
        api = shared_client(path)
        return _read(CoreApi(api), stack, DOWNSTREAM_NAMESPACE)

    @staticmethod
    def _write_one(stack: StackRef, cluster: str, path: Path, releases: Releases) -> None:
        api = shared_client(path)
        core = CoreApi(api)
        if not releases:
            _delete(core, stack, DOWNSTREAM_NAMESPACE)
            return
        ensure_records_namespace(core)
        _write(core, stack, DOWNSTREAM_NAMESPACE, encode(stack, {cluster: releases}))


def ensure_records_namespace(core: CoreApi) -> None:
    core.ensure_namespace(DOWNSTREAM_NAMESPACE, _request_timeout=_TIMEOUT)
