"""Which releases a Stack installed, as Herd recorded it where only Herd writes. Pure.

A downstream release Secret is data that whoever may write its namespace controls: its
`herd.suse.com/stack` label is a display hint, never a licence to uninstall. Herd keeps its
own record instead, one per Stack, `Owned`: cluster -> "namespace/release" -> the revision
Herd's helm call produced. The operator keeps it on the management cluster (a ConfigMap in
its own namespace), the CLI in each downstream cluster's `herd-system` namespace (only
cluster admins write there): `herd.kube.owned` holds both stores, behind
`herd.engine.protocols.OwnershipStore`.

The decisions, table-tested in `tests/test_ownership.py`:

- `leftover`: what to do with a release the Stack no longer wants. Herd removes it only
  when it is in the record for that cluster, still labelled for the Stack (a relabelled
  one is a conflict), and in a namespace the Stack may use; anything else is left in place
  and reported. The uninstall itself runs as the Stack's identity (`herd.rollout`).
- `pinned`: a recorded release whose latest revision is not the recorded one was written
  by someone else since: its uninstall runs with `--no-hooks`.
- `next_record`: the record after a pass's results (installs and upgrades recorded,
  uninstalls and vanished releases dropped), bounded by `bounded`. Migration from a Herd
  without a record: on a cluster with no record yet, a desired release found labelled for
  the Stack and at its desired state is recorded too; leftovers are never adopted.

Callers: `herd.rollout.scheduler` (leftovers), `herd.rollout.actions` (pinned),
`herd.engine.engine` (load, next record, save), `herd.kube.owned` (encode, decode).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from herd.plan.decide import Action
from herd.plan.releases import ObservedRelease, ReleaseKey, owner_label
from herd.plan.results import ReleaseResult, State

MAX_RELEASES = 4000  # per Stack, every cluster together: ~130 bytes each, well under 1 MiB
RECORD_KEY = "record"  # the ConfigMap data key holding the JSON record

Releases = dict[str, int]  # "namespace/release" -> revision Herd recorded


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

    def revision(self, key: ReleaseKey) -> int | None:
        return self.on(key.cluster).get(release_id(key.namespace, key.name))


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
    recorded: Mapping[str, int],
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
            recorded.get(release_id(release.namespace, release.name)),
            allowed=allowed(release.namespace),
            known=known,
        )
        if found is not None:
            out.append((release, found))
    return out


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
    or an upgrade (deployed, or failed with a revision), dropped on uninstall. On a
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
        elif row.revision and row.action in (Action.INSTALL, Action.UPGRADE):
            if row.state in (State.DEPLOYED, State.FAILED):
                mine[ident] = row.revision
        elif (
            row.state is State.DEPLOYED
            and row.revision
            and row.config is not None  # a desired release, not a leftover
            and cluster in before.migrating
            and ident not in mine
        ):
            mine[ident] = row.revision
    return bounded({c: r for c, r in record.items() if r})


def bounded(
    record: Mapping[str, Mapping[str, int]], limit: int = MAX_RELEASES
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
            out[cluster] = {k: int(record[cluster][k]) for k in ids}
            left -= len(ids)
    return out


def encode(stack: StackRef, releases: Mapping[str, Mapping[str, int]]) -> str:
    """The JSON stored in the record's ConfigMap."""
    body = {"stack": f"{stack.namespace}/{stack.name}", "releases": bounded(releases)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


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
            kept = {
                k: v
                for k, v in releases.items()
                if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
            }
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
