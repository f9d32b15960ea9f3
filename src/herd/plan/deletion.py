"""What a Stack's deletion may do after a clean-up pass: finish, or wait and why. Pure.

The operator (`herd.operator.teardown`) uninstalls the Stack's releases on the clusters
its status records as holding them (plus its current targets), then asks `decide` for
a verdict. Deletion finishes only when no recorded cluster may still hold a release:

- a cluster that could not be checked (API unreachable, kubeconfig missing, not ready)
  holds deletion back, named in the Stack's `Deleting` condition, and is retried with
  backoff;
- ways out: the annotation `herd.suse.com/orphan-clusters: id1,id2` gives up on those
  clusters' releases; a cluster removed from the inventory is released (with a warning
  Event: its releases, if any, are left behind);
- a cluster the Stack's grants no longer cover is never contacted (every uninstall runs
  as the tenant, and the tenant may not reach it): it is orphaned, its releases stay, and
  the operator says so in a warning Event naming it;
- an uninstall that failed holds deletion back, naming the release;
- `spec.deletionPolicy: Orphan` keeps every release and never contacts a cluster.

Table-tested in `tests/test_deletion.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from herd.names import ORPHAN_ANNOTATION


def orphaned_clusters(annotations: Mapping[str, str]) -> frozenset[str]:
    """The cluster ids listed in the orphan-clusters annotation (comma separated)."""
    raw = annotations.get(ORPHAN_ANNOTATION, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class Verdict:
    """The outcome of one deletion pass."""

    done: bool
    waiting: Mapping[str, str]  # cluster id -> why it holds deletion back
    released: tuple[str, ...] = ()  # gone from the inventory: given up, with a warning
    orphaned: tuple[str, ...] = ()  # given up on by the orphan-clusters annotation
    not_granted: tuple[str, ...] = ()  # no longer granted: orphaned, never cleaned as admin
    failed: Mapping[str, str] | None = None  # cluster id -> an uninstall that failed there

    @property
    def reason(self) -> str:
        """The `Deleting` condition's reason while deletion waits."""
        if self.waiting:
            return "ClusterUnreachable"
        return "UninstallFailed" if self.failed else "Deleted"

    def message(self, limit: int = 10) -> str:
        parts = []
        if self.waiting:
            ids = sorted(self.waiting)
            shown = ", ".join(f"{c} ({self.waiting[c]})" for c in ids[:limit])
            more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
            parts.append(
                f"waiting for clusters {shown}{more}; to give up on their releases, list them "
                f"in the annotation {ORPHAN_ANNOTATION}"
            )
        if self.failed:
            ids = sorted(self.failed)
            more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
            shown = "; ".join(f"on {c}: {self.failed[c]}" for c in ids[:limit])
            parts.append(f"uninstall failed {shown}{more}")
        return "; ".join(parts) or "every release removed"


def decide(
    *,
    holding: Collection[str],
    inventory: Collection[str],
    unchecked: Mapping[str, str],
    failed: Mapping[str, str] | None = None,
    orphan: Collection[str] = (),
    denied: Collection[str] = (),
) -> Verdict:
    """Finish or wait, after a pass that uninstalled what it could reach.

    `holding`: clusters that hold or may hold the Stack's releases (its record and
    targets). `inventory`: cluster ids known now. `unchecked`: clusters the pass could
    not check, id -> why. `failed`: cluster id -> an uninstall that failed there.
    `orphan`: clusters given up on. `denied`: clusters the Stack's grants no longer cover
    (not contacted): orphaned when they may hold a release.
    """
    waiting: dict[str, str] = {}
    released: list[str] = []
    orphaned: list[str] = []
    not_granted: list[str] = []
    for cluster in sorted(set(holding) | set(unchecked)):
        if cluster in denied:
            if cluster in holding:
                not_granted.append(cluster)
        elif cluster in orphan:
            orphaned.append(cluster)
        elif cluster not in inventory:
            if cluster in holding:
                released.append(cluster)
        elif cluster in unchecked and cluster in holding:
            waiting[cluster] = unchecked[cluster]
    blocking = {c: why for c, why in (failed or {}).items() if c not in orphan}
    return Verdict(
        done=not waiting and not blocking,
        waiting=waiting,
        released=tuple(released),
        orphaned=tuple(orphaned),
        not_granted=tuple(not_granted),
        failed=blocking or None,
    )
