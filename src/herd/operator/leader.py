"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does.

Callers: `herd.operator.handlers.run` waits in `LeaderElector.acquire` (standby), then
runs kopf while `LeaderElector.keep` renews; `keep` returning means another process
leads now, and a renewal that fails for too long pauses helm work until it succeeds again.
`release` hands the Lease over on a clean exit, so a standby takes over at its next try.

The decisions are pure (`observe`, `decide`, `lease_spec`, `still_leading`), table-tested:

- A Lease is expired when this process has seen it unchanged (same holder, renew time
  and transitions) for `leaseDurationSeconds`, measured on its own monotonic clock. The
  holder's timestamps are never compared with this machine's clock, so clock skew between
  nodes cannot make two leaders.
- Writes carry the `resourceVersion` that was read: of two candidates, one wins (409
  for the other).
- The leader renews every fifth of the duration; when it could not renew for two thirds
  of it, before any standby can consider the Lease expired, it starts no new helm work
  until it renews again (or exits, if another process took the Lease meanwhile).
- The fence: when it could not renew for the duration plus half of `HANDOVER_SECONDS`, a
  thread of its own (the event loop may be stuck) SIGKILLs its running helm. A standby
  takes an expired Lease no earlier than a duration after the last renewal it saw, so once
  the new leader has held the Lease for `HANDOVER_SECONDS`, no helm of the old holder runs:
  its journaled operations (`herd.kube.journal`) are recovered then (`Tenure`).
- The one exception to waiting out a Lease: a holder known to be gone with every helm it
  started, because it was this work directory's previous process and the directory's
  actors lock is free (`herd.helm.workdir.take_over`; a container restarted in its pod).
  Its Lease is taken at once, and its journaled operations are recovered without the
  hand-over grace (`Tenure.gone`); other former holders' keep it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.kube.client import API_ERRORS, api_error_summary, read_json

RENEW_FRACTION = 1 / 5  # the leader renews this often (of the duration): a renewal that
# comes late (a slow API call, a busy loop) still lands within a third of the duration
DEADLINE_FRACTION = 2 / 3  # ... and gives up when it could not renew for this long
RETRY_FRACTION = 2 / 15  # a standby tries this often (client-go: 2 s of 15 s)
HANDOVER_SECONDS = 5.0  # a new leader recovers what its predecessor left this long after
# taking the Lease; the predecessor's fence fires half of it earlier (clock rates, kill time)
FENCE_POLL_SECONDS = 0.25
RELEASE_ATTEMPTS = 3  # a hand-over that conflicts with a late renewal of ours is retried

logger = logging.getLogger(__name__)


def lease_name(shard: str) -> str:
    """One Lease per shard: each shard elects its own leader."""
    return f"herd-controller-{shard}" if shard else "herd-controller"


def identity() -> str:
    """Pod name (the hostname in a pod), pid and a random part: unique per process."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(3)}"


# -- pure decisions ----------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRecord:
    """What the Lease says; `holder` "" means released."""

    holder: str
    duration: float
    acquired: str | None = None
    renewed: str | None = None
    transitions: int = 0
    version: str = ""

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> LeaseRecord:
        spec = body.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration=float(spec.get("leaseDurationSeconds") or 0),
            acquired=spec.get("acquireTime"),
            renewed=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def same_term(self, other: LeaseRecord) -> bool:
        return (self.holder, self.renewed, self.transitions) == (
            other.holder,
            other.renewed,
            other.transitions,
        )


@dataclass(frozen=True)
class Observation:
    record: LeaseRecord
    since: float  # local monotonic time when this record was first seen


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """Keep the first time a record was seen while it does not change."""
    if previous is not None and previous.record.same_term(record):
        return Observation(record, previous.since)
    return Observation(record, now)


class Verdict(enum.Enum):
    CREATE = "create"  # no Lease yet
    ACQUIRE = "acquire"  # released or expired: take it
    RENEW = "renew"  # ours
    WAIT = "wait"  # another holder's, still valid


def decide(
    observation: Observation | None, me: str, now: float, gone: str | None = None
) -> Verdict:
    """`gone`: a holder known to act no more (`herd.helm.workdir.take_over`), whose Lease
    is taken without waiting for it to expire."""
    if observation is None:
        return Verdict.CREATE
    record = observation.record
    if record.holder == me:
        return Verdict.RENEW
    if not record.holder or record.holder == gone or now - observation.since >= record.duration:
        return Verdict.ACQUIRE
    return Verdict.WAIT


def lease_spec(
    record: LeaseRecord | None, me: str, verdict: Verdict, duration: float, now: datetime
) -> dict[str, Any]:
    """The Lease spec to write for a CREATE, ACQUIRE or RENEW verdict."""
    stamp = micro_time(now)
    spec: dict[str, Any] = {
        "holderIdentity": me,
        "leaseDurationSeconds": max(1, round(duration)),
        "renewTime": stamp,
    }
    if verdict is Verdict.RENEW and record is not None:
        spec["acquireTime"] = record.acquired or stamp
        spec["leaseTransitions"] = record.transitions
    else:
        spec["acquireTime"] = stamp
        # As client-go counts: every change of holder (a handover from "" included).
        changed = record is not None and record.holder != me
        spec["leaseTransitions"] = (record.transitions if record else 0) + int(changed)
    return spec


def still_leading(last_renewed: float, now: float, duration: float) -> bool:
    """True while the last successful renewal is recent enough to keep acting."""
    return now - last_renewed < duration * DEADLINE_FRACTION


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Tenure:
    """This process's leadership, as its journal records it: who, which term (the Lease's
    transitions), and when (monotonic) it took the Lease; `gone`: a former holder known to
    have ended with all its helm (`LeaderElector.gone`), whose operations need no grace."""

    holder: str
    term: int
    acquired: float
    grace: float = HANDOVER_SECONDS
    gone: str | None = None


def fenced(last_renewed: float, now: float, duration: float) -> bool:
    """True once a standby may have taken the Lease and its hand-over grace half passed."""
    return now - last_renewed >= duration + HANDOVER_SECONDS / 2


def release_body(name: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease that hands `record`'s term over: no holder, written over its version."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "resourceVersion": record.version},
        "spec": {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": record.acquired,
            "renewTime": micro_time(datetime.now(UTC)),
            "leaseTransitions": record.transitions,
        },
    }


# -- the elector ---------------------------------------------------------------------------


class LeaderElector:
    """Acquire, renew and release one Lease through the (blocking) kubernetes client."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        me: str,
        duration: float,
        *,
        gone: str | None = None,
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.me = me
        self.duration = duration
        self.gone = gone  # this work directory's previous process, ended with its helm
        self._observation: Observation | None = None
        self._renewed = 0.0  # monotonic time of our last successful write
        self._reported: str | None = None  # the holder last logged, to log changes only
        self._acquired = 0.0  # monotonic time this process took the Lease
        self.leading = False

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def acquire(self) -> None:
        """Return once this process holds the Lease (standby until then)."""
        while not await self._attempt():
            record = self._observation.record if self._observation else None
            if record is not None and record.holder != self._reported:
                self._reported = record.holder
                logger.info(
                    "Standby: Lease %s is held by %s; waiting for it to be released or expire",
                    self.where,
                    record.holder or "nobody",
                )
            await asyncio.sleep(self._retry_delay())
        self.leading = True
        self._acquired = time.monotonic()
        logger.info("Leading: acquired Lease %s as %s", self.where, self.me)

    def tenure(self) -> Tenure:
        """Who leads now (after `acquire`): what the journal records and waits on."""
        record = self._observation.record if self._observation else None
        return Tenure(self.me, record.transitions if record else 0, self._acquired, gone=self.gone)

    def fence(self, kill: Callable[[], object]) -> threading.Thread:
        """Start the fence thread: `kill` (SIGKILL of this process's helm) once renewal has
        lapsed past `fenced`, and again after each later renewal lapses."""

        def watch() -> None:
            fired = False
            while True:
                time.sleep(FENCE_POLL_SECONDS)
                if not fenced(self._renewed, time.monotonic(), self.duration):
                    fired = False
                elif not fired:
                    fired = True
                    logger.error(
                        "Lease %s not renewed for %.0fs: killing running helm (fence)",
                        self.where,
                        time.monotonic() - self._renewed,
                    )
                    kill()

        thread = threading.Thread(target=watch, name="herd lease fence", daemon=True)
        thread.start()
        return thread

    async def keep(self, paused: Callable[[bool], None] = lambda _: None) -> None:
        """Renew until another holder has the Lease (then return; the caller stops).

        When renewal fails for two thirds of the duration (the management API is down,
        or this process is cut off from it), others may soon consider the Lease expired:
        `paused(True)` tells the caller to start no new helm work, and renewal goes on.
        Renewed again with the Lease still this process's, `paused(False)`. Helm already
        running is left to finish: a new leader's recovery treats a release whose helm
        operation is younger than its timeout as in progress elsewhere, never as stuck.
        """
        suspended = False
        while True:
            await asyncio.sleep(self.duration * RENEW_FRACTION)
            while not await self._attempt():
                if self._observation and self._observation.record.holder not in ("", self.me):
                    logger.error("Lost Lease %s to %s", self.where, self._observation.record.holder)
                    self.leading = False
                    return
                if not suspended and not still_leading(
                    self._renewed, time.monotonic(), self.duration
                ):
                    logger.error(
                        "Could not renew Lease %s for %.0fs; starting no new helm work "
                        "until it is renewed",
                        self.where,
                        time.monotonic() - self._renewed,
                    )
                    suspended = True
                    self.leading = False
                    paused(True)
                await asyncio.sleep(self.duration * RETRY_FRACTION / 2)
            if suspended:
                logger.info("Renewed Lease %s again; resuming helm work", self.where)
                suspended = False
                self.leading = True
                paused(False)

    async def release(self) -> None:
        """Hand the Lease over (best effort): a standby acquires it at its next try.

        A renewal still in flight in its thread when the renewal task was cancelled may land
        first and move the Lease's resourceVersion: the hand-over then conflicts (409). It is
        read again and handed over while this process still holds it, never over another
        holder's term."""
        body = self._released()
        for _ in range(RELEASE_ATTEMPTS):
            if body is None:
                return
            try:
                await self._call(
                    self._leases.replace_namespaced_lease, self.name, self.namespace, body
                )
                logger.info("Released Lease %s", self.where)
                return
            except ApiException as error:
                if error.status != 409:
                    logger.warning(
                        "Could not release Lease %s: %s", self.where, api_error_summary(error)
                    )
                    return
            except API_ERRORS as error:
                logger.warning(
                    "Could not release Lease %s: %s", self.where, api_error_summary(error)
                )
                return
            body = await self._reread_for_release()
        logger.warning("Could not release Lease %s: it kept changing", self.where)

    async def _reread_for_release(self) -> dict[str, Any] | None:
        """The hand-over body from the Lease as it is now; None unless this process holds it."""
        try:
            found = await self._call(self._leases.read_namespaced_lease, self.name, self.namespace)
        except API_ERRORS as error:
            logger.warning("Could not release Lease %s: %s", self.where, api_error_summary(error))
            return None
        record = LeaseRecord.from_body(found)
        if record.holder != self.me:
            return None  # released already, or another process's term: not ours to write
        return release_body(self.name, record)

    def release_now(self, timeout: float = 2.0) -> None:
        """`release` without the event loop (a forced exit's cleanup, from a thread)."""
        body = self._released()
        if body is not None:
            read_json(
                self._leases.replace_namespaced_lease,
                self.name,
                self.namespace,
                body,
                _request_timeout=timeout,
            )
            logger.info("Released Lease %s", self.where)

    def _released(self) -> dict[str, Any] | None:
        """The Lease body that hands it over; None when this process does not lead."""
        if not self.leading or self._observation is None:
            return None
        self.leading = False
        return release_body(self.name, self._observation.record)

    def _retry_delay(self) -> float:
        """Try again soon, and right when the observed Lease would expire."""
        retry = max(0.5, self.duration * RETRY_FRACTION)
        if self._observation is None:
            return retry
        expires = self._observation.since + self._observation.record.duration
        return max(0.1, min(retry, expires - time.monotonic() + 0.05))

    async def _attempt(self) -> bool:
        """One read-decide-write round; True when this process holds the Lease after it."""
        try:
            body: dict[str, Any] | None = await self._call(
                self._leases.read_namespaced_lease, self.name, self.namespace
            )
        except ApiException as error:
            if error.status != 404:
                logger.warning("Cannot read Lease %s: %s", self.where, api_error_summary(error))
                return False
            body = None
        except API_ERRORS as error:
            logger.warning("Cannot read Lease %s: %s", self.where, api_error_summary(error))
            return False
        now = time.monotonic()
        record = LeaseRecord.from_body(body) if body else None
        self._observation = observe(self._observation, record, now) if record else None
        verdict = decide(self._observation, self.me, now, self.gone)
        if verdict is Verdict.WAIT:
            return False
        if record is not None and record.holder == self.gone:
            logger.info(
                "Standby: Lease %s is held by %s, this work directory's previous process, "
                "which ended with every helm it started: taking it at once",
                self.where,
                record.holder,
            )
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": lease_spec(record, self.me, verdict, self.duration, datetime.now(UTC)),
        }
        try:
            if record is None:
                written = await self._call(
                    self._leases.create_namespaced_lease, self.namespace, lease
                )
            else:
                metadata["resourceVersion"] = record.version  # optimistic concurrency
                written = await self._call(
                    self._leases.replace_namespaced_lease, self.name, self.namespace, lease
                )
        except ApiException as error:
            if error.status != 409:  # 409: another candidate wrote first; read again
                logger.warning("Cannot write Lease %s: %s", self.where, api_error_summary(error))
            return False
        except API_ERRORS as error:
            logger.warning("Cannot write Lease %s: %s", self.where, api_error_summary(error))
            return False
        self._renewed = now
        self._observation = Observation(LeaseRecord.from_body(written), now)
        return True

    async def _call(self, method: Any, *args: Any) -> dict[str, Any]:
        """A blocking client call in a thread, with a timeout well under the renew period."""
        timeout = max(1.0, self.duration * RETRY_FRACTION)
        return await asyncio.to_thread(read_json, method, *args, _request_timeout=timeout)
