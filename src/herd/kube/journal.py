"""Where the operator journals its helm operations: one ConfigMap per Lease, management side.

`ManagementJournal` keeps `herd-journal-<lease name>` in the controller's namespace, where
tenants cannot write (`herd.plan.journal` says what an entry is and when it makes a release
abandoned). Only the leader writes it: `load` reads what earlier holders left when this
process takes the Lease; `started` adds an entry and returns once it is stored (helm starts
after it, so a crash can never leave a pending release the journal does not know), and
concurrent starts share one write; `finished` forgets an entry in memory (the next write
drops it; a stale entry is harmless, it matches no later revision).

A write that fails is logged and helm runs anyway: that release is then recovered by the
age rule only, as without a journal. Every API call blocks in a worker thread.

Callers: `herd.operator.runtime` builds it, `herd.rollout.actions` uses it
(`OperationJournal`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.kube.client import NOT_FOUND, api_error_summary, read_json
from herd.plan.journal import Operation, abandoned_in, decode, encode, entry_key
from herd.plan.releases import ObservedRelease, ReleaseKey

logger = logging.getLogger(__name__)
DATA_KEY = "operations"
_TIMEOUT = 10


class OperationJournal(Protocol):
    """What the rollout asks of a journal (`herd.rollout.actions`)."""

    async def started(self, key: ReleaseKey, revision: int, statuses: tuple[str, ...]) -> None: ...

    def finished(self, key: ReleaseKey) -> None: ...

    def abandoned(self, key: ReleaseKey, observed: ObservedRelease) -> bool: ...

    def abandoned_in(self, key: ReleaseKey, observed: ObservedRelease) -> float | None: ...


class ManagementJournal:
    """The leader's journal. `holder`/`term`: this process's Lease identity and term;
    `acquired`: monotonic time it took the Lease; `grace`: how long after that a former
    holder may still have helm running (`herd.operator.leader.HANDOVER_SECONDS`); `gone`: a
    former holder known to have ended with all its helm, whose operations need no grace."""

    def __init__(  # noqa: PLR0917 (who acts, and where it writes)
        self,
        api: client.ApiClient,
        namespace: str,
        lease: str,
        holder: str,
        term: int,
        acquired: float,
        grace: float,
        *,
        gone: str | None = None,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._gone = gone
        self._namespace = namespace
        self.name = f"herd-journal-{lease}"
        self._holder, self._term = holder, term
        self._ready_at = acquired + grace
        self._operations: dict[str, Operation] = {}
        self._running: set[str] = set()
        self._changes = 0  # bumped by every change; `_stored` is the last one written
        self._stored = 0
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """What earlier holders left (kept until matched or a day old)."""
        try:
            body = await asyncio.to_thread(
                read_json,
                self._core.read_namespaced_config_map,
                self.name,
                self._namespace,
                _request_timeout=_TIMEOUT,
            )
        except ApiException as error:
            if error.status != NOT_FOUND:
                logger.warning("Cannot read journal %s: %s", self.name, api_error_summary(error))
            return
        except Exception as error:
            logger.warning("Cannot read journal %s: %s", self.name, api_error_summary(error))
            return
        left = decode((body.get("data") or {}).get(DATA_KEY), time.time())
        self._operations = left | self._operations
        if left:
            logger.info(
                "Journal %s: %d helm operation(s) of earlier holders to check", self.name, len(left)
            )

    async def started(self, key: ReleaseKey, revision: int, statuses: tuple[str, ...]) -> None:
        name = entry_key(key)
        self._operations[name] = Operation(
            revision, statuses, self._holder, self._term, time.time()
        )
        self._running.add(name)
        self._changes += 1
        await self._flush(self._changes)

    def finished(self, key: ReleaseKey) -> None:
        name = entry_key(key)
        self._running.discard(name)
        if self._operations.pop(name, None) is not None:
            self._changes += 1

    def abandoned(self, key: ReleaseKey, observed: ObservedRelease) -> bool:
        return self.abandoned_in(key, observed) == 0.0

    def abandoned_in(self, key: ReleaseKey, observed: ObservedRelease) -> float | None:
        """Seconds until `abandoned` (`herd.plan.journal.abandoned_in`): what is left of
        the hand-over grace for a release an earlier holder's helm left pending."""
        name = entry_key(key)
        operation = self._operations.get(name)
        gone = operation is not None and operation.holder == self._gone
        return abandoned_in(
            operation,
            observed,
            running=name in self._running,
            grace=0.0 if gone else self.wait_seconds(),
        )

    def wait_seconds(self) -> float:
        """How long until a former holder's helm is surely gone (0 once it is)."""
        return max(0.0, self._ready_at - time.monotonic())

    async def _flush(self, wanted: int) -> None:
        """Store the journal unless a write since change `wanted` already did."""
        async with self._lock:
            if self._stored >= wanted:
                return
            changes = self._changes
            data = encode(self._operations)
            try:
                await asyncio.to_thread(self._write, data)
            except Exception as error:
                logger.warning("Cannot write journal %s: %s", self.name, api_error_summary(error))
                return
            self._stored = changes

    def _write(self, data: str) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self._namespace,
                "labels": {"app.kubernetes.io/managed-by": "herd"},
            },
            "data": {DATA_KEY: data},
        }
        try:
            self._core.replace_namespaced_config_map(
                self.name, self._namespace, cast(Any, body), _request_timeout=_TIMEOUT
            )
        except ApiException as error:
            if error.status != NOT_FOUND:
                raise
            self._core.create_namespaced_config_map(
                self._namespace, cast(Any, body), _request_timeout=_TIMEOUT
            )
