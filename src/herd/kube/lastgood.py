"""Where a Stack's last good revisions (`herd.plan.lastgood`) are kept: two `LastGoodStore`s.

- `ManagementLastGood` (the operator): one ConfigMap per Stack in the controller's own
  namespace on the management cluster, `herd-lastgood-<stack uid>`, labelled with the
  Stack's namespace and name, beside its ownership record (`herd.kube.owned`). No tenant
  may write there, and nothing downstream is read to fill it: every field comes from Herd's
  plan and Herd's own helm calls. The leader is the only writer: cached after the first
  read. Deleted with the Stack (`Engine.forget`, after its deletion completed).
- `DownstreamLastGood` (the CLI, which has no management cluster): one ConfigMap per
  Stack and cluster in that cluster's `herd-system` namespace, as the CLI's ownership
  record, which only the cluster's admins (the CLI's user) may write.

A read that fails is a `TransientError` for the operator (the pass retries) and an empty
record for the CLI (nothing to roll back to there, said per release); a write that fails
is logged and keeps the old record. Callers: `herd.operator.runtime` and `herd.cli.fleet`
build them; `herd.engine` uses them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from kubernetes import client

from herd.errors import TransientError
from herd.kube.client import api_error_summary
from herd.kube.core import CoreApi
from herd.kube.owned import (
    DOWNSTREAM_NAMESPACE,
    config_map,
    delete_config_map,
    drop_config_map,
    ensure_records_namespace,
    read_data,
    record_name,
    write_config_map,
)
from herd.kube.shared import shared_client
from herd.plan.lastgood import RECORD_KEY, Record, decode, encode
from herd.plan.ownership import StackRef

logger = logging.getLogger(__name__)
PREFIX = "herd-lastgood"


class ManagementLastGood:
    """The operator's store: one ConfigMap per Stack in `namespace` (HERD_NAMESPACE)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._core = CoreApi(api)
        self._namespace = namespace
        self._cache: dict[str, Record] = {}

    async def load(self, stack: StackRef, clusters: Mapping[str, Path]) -> Record:
        name = record_name(stack, PREFIX)
        if name not in self._cache:
            try:
                text = await asyncio.to_thread(
                    read_data, self._core, name, self._namespace, RECORD_KEY
                )
            except Exception as error:
                raise TransientError(
                    f"cannot read the Stack's last good revisions ConfigMap {self._namespace}/"
                    f"{name}: {api_error_summary(error)}"
                ) from None
            self._cache[name] = decode(text)
        return {c: dict(r) for c, r in self._cache[name].items()}

    async def save(self, stack: StackRef, record: Record, clusters: Mapping[str, Path]) -> None:
        name = record_name(stack, PREFIX)
        if self._cache.get(name) == record:
            return
        body = config_map(name, self._namespace, stack, {RECORD_KEY: encode(stack.owner, record)})
        try:
            await asyncio.to_thread(write_config_map, self._core, body)
        except Exception as error:
            logger.warning(
                "Cannot write the last good revisions %s/%s of Stack %s: %s",
                self._namespace,
                name,
                stack.owner,
                api_error_summary(error),
            )
            return
        self._cache[name] = {c: dict(r) for c, r in record.items()}

    async def drop(self, stack: StackRef, clusters: Mapping[str, Path]) -> None:
        name = record_name(stack, PREFIX)
        await drop_config_map(self._core, name, self._namespace, "the last good revisions")
        self._cache.pop(name, None)


class DownstreamLastGood:
    """The CLI's store: one ConfigMap per Stack in each cluster's `herd-system`."""

    async def load(self, stack: StackRef, clusters: Mapping[str, Path]) -> Record:
        found = await asyncio.gather(
            *(asyncio.to_thread(_read_one, stack, path) for path in clusters.values()),
            return_exceptions=True,
        )
        out: Record = {}
        for cluster, record in zip(clusters, found, strict=True):
            if isinstance(record, BaseException):
                logger.warning("Cannot read the last good revisions on cluster %s", cluster)
            elif cluster in record:
                out[cluster] = record[cluster]
        return out

    async def save(self, stack: StackRef, record: Record, clusters: Mapping[str, Path]) -> None:
        async def one(cluster: str, path: Path) -> None:
            try:
                await asyncio.to_thread(_write_one, stack, cluster, path, record)
            except Exception as error:
                logger.warning(
                    "Cannot write the last good revisions on cluster %s: %s",
                    cluster,
                    api_error_summary(error),
                )

        await asyncio.gather(*(one(c, p) for c, p in clusters.items() if c in record))

    async def drop(self, stack: StackRef, clusters: Mapping[str, Path]) -> None:
        for path in clusters.values():
            await asyncio.to_thread(_drop_one, stack, path)


def _read_one(stack: StackRef, path: Path) -> Record:
    api = shared_client(path)
    core = CoreApi(api)
    return decode(read_data(core, record_name(stack, PREFIX), DOWNSTREAM_NAMESPACE, RECORD_KEY))


def _write_one(stack: StackRef, cluster: str, path: Path, record: Record) -> None:
    api = shared_client(path)
    core = CoreApi(api)
    ensure_records_namespace(core)
    data = {RECORD_KEY: encode(stack.owner, {cluster: record[cluster]})}
    write_config_map(
        core, config_map(record_name(stack, PREFIX), DOWNSTREAM_NAMESPACE, stack, data)
    )


def _drop_one(stack: StackRef, path: Path) -> None:
    api = shared_client(path)
    delete_config_map(CoreApi(api), record_name(stack, PREFIX), DOWNSTREAM_NAMESPACE)
