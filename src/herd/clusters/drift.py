"""Drift of one cluster's releases, at bounded cost: `DriftMemory` and `check_cluster`.

What a pass over releases nobody touched costs: one metadata-only list per (kind,
namespace) group of the cluster's due releases' objects, selected by helm's
`app.kubernetes.io/managed-by=Helm` label, compared with the resourceVersion Herd
recorded at its last check or correction. Only an object whose resourceVersion moved, or
that the list does not show (deleted, or its helm label removed), gets a full read and a
comparison with the manifest (`herd.plan.drift.drifted_paths`); so is every object of a
release whose ignore rules changed (a verdict made under other rules is stale). The
manifest is read once per helm revision (the release's storage Secret) and kept; it is
parsed by `parse` (the operator's: in a worker process with a time and memory limit,
`herd.rollout.drift`).

Which manifest: the one of the revision Herd recorded (`ReleaseCheck.recorded`), not the
latest stored one, which anybody who may write the release's namespace can add. A release
Secret is that somebody's data, so a correction, which may write as admin, applies a
manifest only when `herd.plan.ownership.stored_verdict` says it is the one Herd wrote (its
digest, taken from helm's output at write time, is the recorded one, and no newer revision
exists). Otherwise nothing is written and the row says why; drift is still detected against
the recorded revision's manifest (or, with no record, the stored one), except when its
digest is not the recorded one: that manifest is not Herd's and is not compared at all.

In Correct mode a drifted or missing object is applied server-side as helm's field manager
(`herd.clusters.drift_api.apply_object`: the manifest object with what helm adds to it,
`with_helm_metadata`, ignored fields as they are live), which re-creates what is missing
and takes back fields another manager took over; no helm command runs, so no helm
revision is added. An apply the API server refuses with
422 (an immutable field) is reported, and the object deleted and re-created only with
`force`. Writes go through `writer`: the tenant's identity for a tenant Stack.

`DriftMemory` is process-wide (the engine's), bounded, keyed by (Stack, release): what
was recorded, the last drift, and when each release is due: in its Stack's slot, once per
interval, the slots of Stacks spread over the interval by a hash of their names, so a
fleet's checks do not fall in one pass and a Stack's add at most one pass per interval.

Everything here blocks: callers use a thread. Callers: `herd.rollout.drift`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes import client

from herd.api.drift import DriftIgnore
from herd.clusters.drift_api import (
    DriftRequestError,
    apply_object,
    delete_object,
    get_object,
    list_metadata,
    release_manifest,
)
from herd.plan.drift import (
    CORRECT,
    ObjectDrift,
    ObjectRef,
    Policy,
    ReleaseDrift,
    applied_object,
    drifted_paths,
    ignored_paths,
    manifest_objects,
    with_helm_metadata,
)
from herd.plan.ownership import Recorded, manifest_digest, stored_verdict
from herd.plan.releases import ReleaseKey

MEMORY_LIMIT = 50_000
OVERDUE_RETRY = 1.0  # seconds, at least, before an overdue check is tried again
REACH_GRACE = 300.0  # an overdue release reached this recently still wakes its Stack
MAX_OBJECTS = 2_000  # per release: a manifest beyond it is checked in part
Group = tuple[str, str, str]  # apiVersion, kind, namespace
Parse = Callable[[str, str], list[tuple[ObjectRef, dict[str, Any]]]]  # manifest, namespace


@dataclass
class _Known:
    """What Herd recorded about one release at one helm revision."""

    revision: int
    objects: dict[ObjectRef, dict[str, Any]]
    digest: str | None = None  # of the manifest as read (`manifest_digest`)
    versions: dict[ObjectRef, str] = field(default_factory=dict)
    drift: dict[ObjectRef, ObjectDrift] = field(default_factory=dict)
    seen: float | None = None
    corrected_at: float | None = None
    due: float = 0.0
    interval: float = 600.0
    last: ReleaseDrift | None = None
    reached: float = 0.0  # when a pass last had this release among its checks
    ignore: tuple[DriftIgnore, ...] = ()  # the rules `versions`' verdicts were made with


@dataclass(frozen=True)
class ReleaseCheck:
    """One release to check: its latest helm revision, its policy, whether it may be
    corrected (`write`), and what Herd recorded of it (None: nothing, never corrected)."""

    key: ReleaseKey
    revision: int
    policy: Policy
    write: bool = False
    recorded: Recorded | None = None

    @property
    def stored(self) -> int:
        """The revision whose manifest is read: the recorded one, else the latest."""
        return self.recorded.revision if self.recorded is not None else self.revision


@dataclass
class DriftMemory:
    known: dict[tuple[str, ReleaseKey], _Known] = field(default_factory=dict)
    requests: int = 0  # downstream requests made (reads and writes), for benchmarks

    def slot(self, owner: str, interval: float, now: float) -> float:
        """The Stack's next check time after `now`: every release of a Stack is checked in
        the same pass once per interval (so drift adds at most one pass per interval to a
        Stack), and Stacks are spread over the interval by a hash of their name."""
        if interval <= 0:
            return now
        digest = hashlib.sha256(owner.encode()).digest()
        offset = int.from_bytes(digest[:4], "big") / 2**32 * interval
        return now - ((now - offset) % interval) + interval

    def expect(self, owner: str, key: ReleaseKey, interval: float, now: float) -> None:
        """A release helm just wrote: its first check falls within `interval` (the
        manifest is read then, whatever the revision)."""
        known = self.known.get((owner, key))
        due = self.slot(owner, interval, now)
        if known is None:
            self.known[(owner, key)] = known = _Known(-1, {}, due=due, interval=interval)
        else:
            known.due = min(known.due, due)
        known.reached = now

    def wait(self, owner: str, now: float) -> float | None:
        """Seconds until the Stack's next release check is due (None: none is). One past
        due that a recent pass reached (its check came due while that pass still ran: a
        pass can outlast a short interval) is retried after a tenth of its interval; one
        no pass reached for a while (not deployed, its cluster away) waits for an
        ordinary pass."""
        waits = [
            k.due - now if k.due > now else max(k.interval / 10, OVERDUE_RETRY)
            for (o, _), k in self.known.items()
            if o == owner and (k.due > now or now - k.reached < max(k.interval, REACH_GRACE))
        ]
        return min(waits) if waits else None

    def last(self, owner: str, key: ReleaseKey) -> ReleaseDrift | None:
        known = self.known.get((owner, key))
        return known.last if known is not None else None

    def forget(self, owner: str, keep: set[ReleaseKey]) -> None:
        for gone in [k for k in self.known if k[0] == owner and k[1] not in keep]:
            del self.known[gone]

    def load(
        self,
        owner: str,
        check: ReleaseCheck,
        reader: client.ApiClient,
        now: float,
        parse: Parse = manifest_objects,
    ) -> _Known:
        before = self.known.get((owner, check.key))
        if before is not None and before.revision == check.stored:
            return before
        if len(self.known) >= MEMORY_LIMIT:
            self.known.clear()
        key = check.key
        self.requests += 1
        manifest = release_manifest(reader, key.namespace, key.name, check.stored)
        digest = manifest_digest(manifest)
        recorded = check.recorded.manifest if check.recorded is not None else None
        objects = {}
        if recorded is None or digest == recorded:  # else not Herd's: not even parsed
            # A release Secret is whoever-can-write-the-namespace's data: bounded work.
            parsed = parse(manifest, key.namespace)[:MAX_OBJECTS]
            objects = {r: with_helm_metadata(o, key.name, key.namespace) for r, o in parsed}
        # The first check of a release is in its Stack's next slot; a revision Herd did
        # not write (expected) is checked at once.
        due = self.slot(owner, check.policy.interval, now)
        if before is not None:  # expected (helm wrote it): as planned; else one Herd did not
            due = before.due if before.revision < 0 else now
        known = _Known(check.stored, objects, digest, due=due, interval=check.policy.interval)
        self.known[(owner, key)] = known
        return known


def check_cluster(
    memory: DriftMemory,
    owner: str,
    checks: list[ReleaseCheck],
    *,
    admin: client.ApiClient,
    writer: client.ApiClient,
    now: float,
    parse: Parse = manifest_objects,
) -> dict[ReleaseKey, ReleaseDrift]:
    """Check (and in Correct mode, correct) the due releases of one cluster. `admin`
    reads helm's release storage; `writer` reads and writes the releases' objects; only
    a manifest Herd wrote is applied (`herd.plan.ownership.stored_verdict`)."""
    loaded: dict[ReleaseKey, _Known] = {}
    out: dict[ReleaseKey, ReleaseDrift] = {}
    for check in checks:
        try:
            known = memory.load(owner, check, admin, now, parse)
        except Exception as error:  # unreadable or hostile bytes: this release only
            out[check.key] = ReleaseDrift(problems=(f"cannot read the release: {error}",))
            continue
        known.reached = now
        if now >= known.due:
            loaded[check.key] = known
    listed, problems = _list_groups(memory, writer, loaded.values())
    for check in checks:
        if check.key not in loaded:
            last = memory.last(owner, check.key)
            if last is not None and check.key not in out:
                out[check.key] = replace(last, corrected=0)  # counted when it happened
            continue
        known = loaded[check.key]
        if known.ignore != check.policy.ignore:  # a verdict under other rules is stale
            known.versions.clear()
            known.ignore = check.policy.ignore
        _compare(memory, writer, known, listed, check.policy)
        corrected, refused = 0, tuple[str, ...]()
        if check.write and check.policy.mode == CORRECT:
            why = stored_verdict(check.recorded, check.revision, known.digest)
            refused = (why,) if why else ()
            if not why:
                corrected = _correct(memory, writer, known, check.policy, now)
        known.due = memory.slot(owner, check.policy.interval, now)
        known.interval = check.policy.interval
        summary = _summary(known, check.policy, now, refused + problems)
        out[check.key] = known.last = replace(summary, corrected=corrected)
    return out


def _list_groups(
    memory: DriftMemory, reader: client.ApiClient, releases: Any
) -> tuple[dict[Group, dict[str, tuple[str, int | None]]], tuple[str, ...]]:
    groups: set[Group] = set()
    for known in releases:
        groups |= {(ref.api_version, ref.kind, ref.namespace) for ref in known.objects}
    listed: dict[Group, dict[str, tuple[str, int | None]]] = {}
    problems: list[str] = []
    for group in sorted(groups):
        memory.requests += 1
        try:
            listed[group] = list_metadata(reader, *group)
        except DriftRequestError as error:
            problems.append(f"cannot list {group[1]} in {group[2] or 'the cluster'}: {error}")
    return listed, tuple(problems)


def _compare(
    memory: DriftMemory,
    reader: client.ApiClient,
    known: _Known,
    listed: dict[Group, dict[str, tuple[str, int | None]]],
    policy: Policy,
) -> None:
    """Read and compare only what moved or is not listed; what did not keeps its verdict."""
    for ref, desired in known.objects.items():
        group = listed.get((ref.api_version, ref.kind, ref.namespace))
        if group is None:
            continue  # not listable this pass: the last verdict stands
        entry = group.get(ref.name)
        if entry is not None and known.versions.get(ref) == entry[0]:
            continue
        memory.requests += 1
        try:
            live = get_object(reader, ref)
        except DriftRequestError as error:
            known.drift[ref] = ObjectDrift(ref, problem=f"cannot read {ref}: {error}")
            continue
        if live is None:
            known.versions.pop(ref, None)
            known.drift[ref] = ObjectDrift(ref, missing=True)
            continue
        known.versions[ref] = str((live.get("metadata") or {}).get("resourceVersion"))
        paths = drifted_paths(ref, desired, live, policy.ignore)
        if paths:
            known.drift[ref] = ObjectDrift(ref, tuple(paths))
        else:
            known.drift.pop(ref, None)


def _correct(
    memory: DriftMemory, writer: client.ApiClient, known: _Known, policy: Policy, now: float
) -> int:
    """Apply each drifted object back; how many were corrected."""
    corrected = 0
    for ref, drift in sorted(known.drift.items()):
        if drift.problem and not drift.missing and not drift.paths:
            continue
        desired = known.objects[ref]
        try:
            memory.requests += 1
            live = get_object(writer, ref) if not drift.missing else None
            obj = applied_object(desired, live, ignored_paths(ref, policy.ignore))
            memory.requests += 1
            try:
                applied = apply_object(writer, ref, obj)
            except DriftRequestError as error:
                if error.status != 422 or not policy.force:
                    raise
                memory.requests += 2
                delete_object(writer, ref)
                applied = apply_object(writer, ref, obj)
        except DriftRequestError as error:
            why = "immutable field: set force to re-create" if error.status == 422 else str(error)
            known.drift[ref] = ObjectDrift(ref, drift.paths, drift.missing, f"not corrected: {why}")
            continue
        known.versions[ref] = str((applied.get("metadata") or {}).get("resourceVersion"))
        del known.drift[ref]
        known.corrected_at = now
        corrected += 1
    return corrected


def _summary(known: _Known, policy: Policy, now: float, problems: tuple[str, ...]) -> ReleaseDrift:
    drifted = tuple(d for _, d in sorted(known.drift.items()) if d.missing or d.paths)
    if drifted and known.seen is None:
        known.seen = now
    if not drifted:
        known.seen = None
    problems += tuple(d.problem for _, d in sorted(known.drift.items()) if d.problem)
    return ReleaseDrift(
        objects=drifted,
        seen=known.seen,
        corrected_at=known.corrected_at,
        mode=policy.mode,
        problems=problems,
    )
