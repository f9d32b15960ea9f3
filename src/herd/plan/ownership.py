"""Which releases a Stack installed, as Herd recorded it where only Herd writes. Pure.

A downstream release Secret is data that whoever may write its namespace controls: its
`herd.suse.com/stack` label is a display hint, never a licence to uninstall. Herd keeps its
own record instead, one per Stack, `Owned`: cluster -> "namespace/release" -> `Recorded`,
the revision Herd's helm call produced and a digest of the manifest helm returned for it
(`manifest_digest`, from helm's own output, so no forger can race it). The operator keeps
it on the management cluster (a ConfigMap in its own namespace), the CLI in each downstream
cluster's `herd-system` namespace (only cluster admins write there): `herd.kube.owned` holds
both stores, behind `herd.engine.protocols.OwnershipStore`.

The decisions, table-tested in `tests/test_ownership.py`:

- `leftover`: what to do with a release the Stack no longer wants. Herd removes it only
  when it is in the record for that cluster, still labelled for the Stack (a relabelled
  one is a conflict), and in a namespace the Stack may use; anything else is left in place
  and reported. The uninstall itself runs as the Stack's identity (`herd.rollout`).
- `pinned`: a recorded release whose latest revision is not the recorded one was written
  by someone else since: its uninstall runs with `--no-hooks`.
- `stored_verdict`: whether a stored release's manifest is the one Herd wrote (its
  revision recorded, the latest, and its digest the recorded one); drift correction
  (`herd.clusters.drift`) applies only such a manifest.
- `next_record`: the record after a pass's results (installs and upgrades recorded,
  uninstalls and vanished releases dropped), bounded by `bounded`. Migration from a Herd
  without a record: on a cluster with no record yet, a desired release found labelled for
  the Stack and at its desired state is recorded too; leftovers are never adopted.

Callers: `herd.rollout.scheduler` (leftovers), `herd.rollout.actions` (pinned),
`herd.engine.engine` (load, next record, save), `herd.kube.owned` (encode, decode).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from herd.plan.decide import Action
from herd.plan.releases import ObservedRelease, ReleaseKey, owner_label
from herd.plan.results import ReleaseResult, State

# Per Stack, every cluster together. A release costs at most ~165 bytes: its id (a namespace
# of 63 and a release name of 53 characters), a revision, a 32-character digest; 4000 of
# them stay within a ConfigMap's 1 MiB (tests/test_ownership.py measures the worst case).
MAX_RELEASES = 4000
RECORD_KEY = "record"  # the ConfigMap data key holding the JSON record
# 128 bits of sha256: forging a manifest with Herd's digest is a second preimage (2^128
# work). A collision (2^64) needs the attacker to choose both manifests, i.e. the chart
# Herd rendered: only a tenant does, for its own releases, whose objects it may write
# itself. Twice as long would cost 128 KiB more of the record for no attack it stops.
DIGEST_CHARS = 32
NO_DIGEST = "not corrected: Herd has no digest of the manifest it wrote (until its next upgrade)"
NOT_HERDS = "not corrected: the stored release is not the one Herd wrote"


class Recorded(NamedTuple):
    """What Herd recorded of one release: the revision its helm call produced and the
    digest of the manifest helm returned for it (None: an older record, an adopted
    release, or a failed helm call)."""

    revision: int
    manifest: str | None = None


Releases = dict[str, Recorded]  # "namespace/release" -> what Herd recorded


def manifest_digest(manifest: str) -> str:
    """The digest of a release manifest, as recorded (`DIGEST_CHARS` hex characters)."""
    data = manifest.encode("utf-8", "surrogatepass")  # a forged one may hold lone surrogates
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def stored_verdict(recorded: Recorded | None, latest: int, stored: str | None) -> str:
    """Why the stored manifest of a release (`stored`: its digest, None when unread) may
    not be applied as Herd, else "". It may when Herd recorded that revision with a
    digest, it is still the latest revision, and its digest is the recorded one."""
    if recorded is None or recorded.manifest is None:
        return NO_DIGEST
    if recorded.revision != latest or stored != recorded.manifest:
        return NOT_HERDS
    return ""


def release_id(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass(frozen=True)
class StackRef:
    """The Stack a record belongs to; `uid` when the Stack lives in Kubernetes."""

    namespace: str
    name: str
    uid: str | None = None

    @property
    def owner(self) -> str:
        return owner_label(self.namespace, self.name)


@dataclass
class Owned:
    """A Stack's record as loaded: what Herd installed, per cluster.

    `migrating`: clusters that have no record yet (a Stack from an older Herd, or a new
    one): desired releases found at their desired state are adopted there. `unknown`:
    clusters whose record could not be read (the CLI's per-cluster store): nothing is
    removed there and their record is not rewritten.
    """

    releases: dict[str, Releases] = field(default_factory=dict)
    migrating: frozenset[str] = frozenset()
    unknown: frozenset[str] = frozenset()

    def on(self, cluster: str) -> Releases:
        return self.releases.get(cluster, {})

    def recorded(self, key: ReleaseKey) -> Recorded | None:
        return self.on(key.cluster).get(release_id(key.namespace, key.name))

    def revision(self, key: ReleaseKey) -> int | None:
        found = self.recorded(key)
        return found.revision if found is not None else None


class Leftover(enum.Enum):
    REMOVE = "remove"
    UNRECORDED = "unrecorded"
    NOT_GRANTED = "not granted"
    RELABELLED = "relabelled"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class LeftoverDecision:
    verdict: Leftover
    recorded: int | None  # the revision Herd recorded, when it did
    message: str = ""  # why it is left in place (the row's message)


LEFT_IN_PLACE = "left in place"


def leftover(
    observed: ObservedRelease,
    owner: str,
    recorded: int | None,
    *,
    allowed: bool,
    known: bool = True,
) -> LeftoverDecision | None:
    """What to do with a release the Stack does not want (None: not the Stack's concern).

    `recorded`: the revision the Stack's record holds for it (None: not recorded);
    `allowed`: the Stack may use the release's namespace (its grants); `known`: the record
    of the cluster could be read."""
    labelled = observed.owner == owner
    where = f"{observed.namespace}/{observed.name}"
    if recorded is None:
        if not labelled:
            return None
        if not known:
            why = f"release {where}: this Stack's record of the cluster cannot be read"
            return LeftoverDecision(Leftover.UNKNOWN, None, f"{why}; {LEFT_IN_PLACE}")
        why = (
            f"release {where} is labelled for this Stack but Herd has no record of installing "
            f"it (made by someone else, or by an older Herd); {LEFT_IN_PLACE}, uninstall it "
            "yourself if it is yours"
        )
        return LeftoverDecision(Leftover.UNRECORDED, None, why)
    if not labelled:
        why = (
            f"release {where} was installed by this Stack but is now labelled for another "
            f"owner (conflict); {LEFT_IN_PLACE}"
        )
        return LeftoverDecision(Leftover.RELABELLED, recorded, why)
    if not allowed:
        why = f"namespace {observed.namespace} is not granted to this Stack any more"
        return LeftoverDecision(Leftover.NOT_GRANTED, recorded, f"{why}; {LEFT_IN_PLACE}")
    return LeftoverDecision(Leftover.REMOVE, recorded)


def leftovers(
    observed: Iterable[ObservedRelease],
    wanted: Iterable[tuple[str, str]],
    owner: str,
    recorded: Mapping[str, Recorded],
    allowed: Callable[[str], bool],
    *,
    known: bool = True,
) -> list[tuple[ObservedRelease, LeftoverDecision]]:
    """`leftover` over one cluster's observed releases, the wanted ones excepted."""
    skip = set(wanted)
    out = []
    for release in observed:
        if (release.namespace, release.name) in skip:
            continue
        found = leftover(
            release,
            owner,
            revision_of(recorded.get(release_id(release.namespace, release.name))),
            allowed=allowed(release.namespace),
            known=known,
        )
        if found is not None:
            out.append((release, found))
    return out


def revision_of(recorded: Recorded | None) -> int | None:
    return recorded.revision if recorded is not None else None


def pinned(recorded: int | None, latest: int) -> str:
    """Why an uninstall must skip the stored release's hooks, else "": the latest stored
    revision is not the one Herd recorded (someone wrote a newer release Secret)."""
    if recorded is not None and recorded != latest:
        return f"revision {latest} is not the revision {recorded} Herd installed"
    return ""


def next_record(
    before: Owned,
    results: Iterable[ReleaseResult],
    observed: Mapping[str, Iterable[str]],
    shared: Iterable[ReleaseKey] = (),
) -> dict[str, Releases]:
    """The record after a pass.

    `observed`: cluster -> the release ids present there (observed this pass): recorded
    releases that vanished are dropped. Rows record what Herd's helm produced: an install
    or an upgrade (deployed, or failed with a revision), or a rollback, with the digest of
    the manifest helm returned (`ReleaseResult.manifest`; a rollback's: the recorded
    revision's), dropped on uninstall. On a
    `migrating` cluster a desired release Deployed as it stands is adopted. Shared add-on
    releases are never a Stack's."""
    record = {c: dict(r) for c, r in before.releases.items()}
    for cluster, present in observed.items():
        if cluster in before.unknown:
            continue
        ids = set(present)
        record[cluster] = {k: v for k, v in record.get(cluster, {}).items() if k in ids}
    skip = set(shared)
    for row in results:
        cluster = row.key.cluster
        if row.key in skip or cluster in before.unknown:
            continue
        ident = release_id(row.key.namespace, row.key.name)
        mine = record.setdefault(cluster, {})
        if row.state is State.UNINSTALLED:
            mine.pop(ident, None)
        elif row.revision and row.action in (Action.INSTALL, Action.UPGRADE, Action.ROLLBACK):
            if row.state in (State.DEPLOYED, State.FAILED):
                mine[ident] = Recorded(row.revision, row.manifest)
        elif (
            row.state is State.DEPLOYED
            and row.revision
            and row.config is not None  # a desired release, not a leftover
            and cluster in before.migrating
            and ident not in mine
        ):
            mine[ident] = Recorded(row.revision)  # adopted: no digest Herd can vouch for
    return bounded({c: r for c, r in record.items() if r})


def bounded(
    record: Mapping[str, Mapping[str, Recorded]], limit: int = MAX_RELEASES
) -> dict[str, Releases]:
    """At most `limit` releases, cut in a stable order (cluster, then release id). A release
    cut out is no longer Herd's to remove: it is left in place, never lost."""
    out: dict[str, Releases] = {}
    left = limit
    for cluster in sorted(record):
        if left <= 0:
            break
        ids = sorted(record[cluster])[:left]
        if ids:
            out[cluster] = {k: Recorded(*record[cluster][k]) for k in ids}
            left -= len(ids)
    return out


def encode(stack: StackRef, releases: Mapping[str, Mapping[str, Recorded]]) -> str:
    """The JSON stored in the record's ConfigMap: "releases": cluster -> release id ->
    `[revision, digest]`, or the bare revision when Herd has no digest (as records were
    before digests were kept)."""
    body = {
        "stack": f"{stack.namespace}/{stack.name}",
        "releases": {
            cluster: {
                k: [r.revision, r.manifest] if r.manifest else r.revision for k, r in mine.items()
            }
            for cluster, mine in bounded(releases).items()
        },
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _revision(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None  # type: ignore[return-value]


def _decoded(value: object) -> Recorded | None:
    """One release's entry: a revision, or `[revision, digest]`; else None (dropped)."""
    if isinstance(value, list) and len(value) == 2:
        revision, digest = _revision(value[0]), value[1]
        valid = isinstance(digest, str) and len(digest) == DIGEST_CHARS
        return Recorded(revision, digest) if revision is not None and valid else None
    revision = _revision(value)
    return Recorded(revision) if revision is not None else None


def decode(text: str | None) -> dict[str, Releases]:
    """The record in `text`; malformed parts are dropped (only Herd writes it)."""
    try:
        body = json.loads(text or "{}")
    except ValueError:
        return {}
    raw = body.get("releases") if isinstance(body, dict) else None
    out: dict[str, Releases] = {}
    for cluster, releases in (raw or {}).items() if isinstance(raw, dict) else ():
        if isinstance(cluster, str) and isinstance(releases, dict):
            found = {k: _decoded(v) for k, v in releases.items() if isinstance(k, str)}
            kept = {k: v for k, v in found.items() if v is not None}
            if kept:
                out[cluster] = kept
    return bounded(out)


class MemoryOwnership:
    """An `OwnershipStore` in this process's memory: the default of an `Engine` built
    without one (tests, one-shot tools). Forgotten when the process ends."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, Releases]] = {}

    async def load(self, stack: StackRef, clusters: Mapping[str, object]) -> Owned:
        key = (stack.namespace, stack.name)
        if key not in self._records:
            return Owned({}, migrating=frozenset(clusters))
        return Owned({c: dict(r) for c, r in self._records[key].items()})

    async def save(
        self,
        stack: StackRef,
        before: Owned,
        after: Mapping[str, Releases],
        clusters: Mapping[str, object],
    ) -> None:
        self._records[(stack.namespace, stack.name)] = {c: dict(r) for c, r in after.items()}

    async def drop(self, stack: StackRef, clusters: Mapping[str, object]) -> None:
        self._records.pop((stack.namespace, stack.name), None)
