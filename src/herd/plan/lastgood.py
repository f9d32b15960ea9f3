"""The last good revision of each release, as Herd recorded it where only Herd writes. Pure.

A rollback (`spec.rollout.onFailure: Rollback`) returns a release to what it was after its
stage last passed. That must not be decided by anything a tenant or a downstream user
controls: a release Secret's labels or history can be forged by whoever may write its
namespace. So Herd keeps its own record, `LastGood`: cluster -> "namespace/release" -> up
to `KEPT` `Good` entries, newest first, each a distinct (chart version, values digest):

- `generation`: the Stack generation the stage passed at (0 for the CLI's Stack files);
- `version`: the chart version Herd deployed; `values`: `values_digest` of the values Herd
  passed to helm (from the plan, never read back from the cluster);
- `revision`: the helm revision Herd's own call produced (the ownership record's), and
  `manifest`: the digest of the manifest helm returned for it (None when Herd has none).

Two entries per release: when a stage passes at this rollout's configuration, the newest
entry is this rollout's; the one before is where a cluster this rollout moved returns to
(`target`: the newest entry that differs from the desired version and values).

Bounds: at most `MAX_RELEASES` releases per Stack (every cluster together) with `KEPT`
entries each. One entry costs at most ~190 bytes of JSON (a 64-character version, two
32-character digests, two numbers) and a release id ~120 (namespace 63, name 53), so the
worst case, 1500 x (120 + 2 x 190), stays under 800 KB, within a ConfigMap's 1 MiB
(`tests/test_lastgood.py` measures it). A release cut out by the bound is not rolled back:
its row says so. Where it is kept: `herd.kube.lastgood` (the operator: a ConfigMap in its own
namespace on the management cluster, deleted with the Stack).

Callers: `herd.rollout.staged` (`remember` after each pass), `herd.rollout.rollback`
(`target`), `herd.kube.lastgood` (encode, decode), `herd.engine`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from herd.plan.ownership import DIGEST_CHARS, StackRef, release_id

MAX_RELEASES = 1500
KEPT = 2
VERSION_CHARS = 64  # a chart version longer than this is not recorded (no rollback to it)
RECORD_KEY = "lastGood"


class Good(NamedTuple):
    """One last good revision of a release (see the module docstring)."""

    generation: int
    version: str
    values: str
    revision: int
    manifest: str | None = None


Record = dict[str, dict[str, tuple[Good, ...]]]  # cluster -> release id -> newest first


class Passed(NamedTuple):
    """A release deployed on a cluster of a stage that passed, as this pass left it."""

    cluster: str
    namespace: str
    name: str
    version: str
    values: str
    revision: int
    manifest: str | None


def values_digest(values: Mapping[str, Any]) -> str:
    """The digest of a release's values as Herd passed them to helm (`DIGEST_CHARS` hex)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]


def remember(
    record: Mapping[str, Mapping[str, tuple[Good, ...]]], passed: Iterable[Passed], generation: int
) -> Record:
    """The record with `passed` releases as their newest good entry. An entry at the same
    version and values is replaced (its revision may have moved); else the newest
    `KEPT` distinct entries stay."""
    out: Record = {c: dict(r) for c, r in record.items()}
    for item in passed:
        if len(item.version) > VERSION_CHARS:
            continue
        good = Good(generation, item.version, item.values, item.revision, item.manifest)
        mine = out.setdefault(item.cluster, {})
        ident = release_id(item.namespace, item.name)
        older = [
            g for g in mine.get(ident, ()) if (g.version, g.values) != (good.version, good.values)
        ]
        mine[ident] = (good, *older)[:KEPT]
    return bounded(out)


def target(entries: Iterable[Good], version: str, values: str) -> Good | None:
    """Where a release returns to: the newest good entry that is not the desired chart
    version and values (None: no earlier good revision is recorded)."""
    return next((g for g in entries if (g.version, g.values) != (version, values)), None)


def bounded(
    record: Mapping[str, Mapping[str, tuple[Good, ...]]], limit: int = MAX_RELEASES
) -> Record:
    """At most `limit` releases, cut in a stable order (cluster, then release id)."""
    out: Record = {}
    left = limit
    for cluster in sorted(record):
        ids = sorted(record[cluster])[: max(0, left)]
        if ids:
            out[cluster] = {k: tuple(record[cluster][k])[:KEPT] for k in ids}
            left -= len(ids)
    return out


def encode(stack: str, record: Mapping[str, Mapping[str, tuple[Good, ...]]]) -> str:
    """The JSON kept in the record's ConfigMap: cluster -> release id -> list of
    `[generation, version, values, revision, manifest]`."""
    body = {
        "stack": stack,
        "releases": {
            cluster: {k: [list(g) for g in entries] for k, entries in mine.items()}
            for cluster, mine in bounded(record).items()
        },
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _number(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None  # type: ignore[return-value]


def _digest(value: object) -> bool:
    return isinstance(value, str) and len(value) == DIGEST_CHARS


def _good(value: object) -> Good | None:
    """One entry, or None when malformed (dropped: only Herd writes the record)."""
    if not isinstance(value, list) or len(value) != 5:
        return None
    generation, version, values, revision, manifest = value
    if _number(generation) is None or not _number(revision) or not _digest(values):
        return None
    if not isinstance(version, str) or not 0 < len(version) <= VERSION_CHARS:
        return None
    if manifest is not None and not _digest(manifest):
        return None
    return Good(generation, version, values, revision, manifest)


def decode(text: str | None) -> Record:
    """The record in `text`; malformed parts are dropped."""
    try:
        body = json.loads(text or "{}")
    except ValueError:
        return {}
    raw = body.get("releases") if isinstance(body, dict) else None
    out: Record = {}
    for cluster, releases in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(cluster, str) or not isinstance(releases, dict):
            continue
        mine = {}
        for ident, entries in releases.items():
            found = [g for g in map(_good, entries if isinstance(entries, list) else []) if g]
            if isinstance(ident, str) and found:
                mine[ident] = tuple(found[:KEPT])
        if mine:
            out[cluster] = mine
    return bounded(out)


class MemoryLastGood:
    """A `LastGoodStore` in this process's memory (an `Engine` built without one)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], Record] = {}

    async def load(self, stack: StackRef, clusters: Mapping[str, object]) -> Record:
        return {c: dict(r) for c, r in self._records.get((stack.namespace, stack.name), {}).items()}

    async def save(self, stack: StackRef, record: Record, clusters: Mapping[str, object]) -> None:
        self._records[(stack.namespace, stack.name)] = {c: dict(r) for c, r in record.items()}

    async def drop(self, stack: StackRef, clusters: Mapping[str, object]) -> None:
        self._records.pop((stack.namespace, stack.name), None)
