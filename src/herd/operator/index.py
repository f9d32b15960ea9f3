"""Following the fleet: which Stacks must be reconciled again when a cluster changes.

Pure and in memory; table-tested in `tests/test_clusters_index.py`. Caller: the operator
(`herd.operator.runtime`) keeps one `TargetIndex`, updates it from each Stack's passes
and deletion (`set`/`remove`), and, when its poll of the inventory finds a cluster
changed — a provisioning Cluster or kubeconfig Secret appearing, changing or
disappearing — asks `affected(before, after)` which Stacks to wake up.
"""

from __future__ import annotations

from herd.api import Targets
from herd.plan.clusters import Cluster
from herd.plan.targets import targets_match

StackKey = tuple[str, str]
"""(namespace, name) of a Stack; the one definition (the operator uses it too)."""

StackKeys = set[StackKey]  # module level: inside the class, `set` is the method below


class TargetIndex:
    """Stack → its targets, queried by cluster changes.

    A Stack is affected when the change makes it start or stop targeting the cluster
    (appearing, disappearing, relabelled, renamed), or when it targets the cluster before
    and after and the cluster became (un)ready, changed id, or its kubeconfig moved or
    rotated. A relabel that keeps a Stack's match as it was does not affect it, unless the
    Stack follows cluster facts (`facts=True`: its `values.clusters` or templated values,
    or ClusterGrants that may select clusters by label bound it), when a relabel or rename
    of a cluster it targets does.
    """

    def __init__(self) -> None:
        self._targets: dict[StackKey, Targets] = {}
        self._facts: StackKeys = set()  # Stacks that labels and names may change (values, grants)

    def set(self, stack: StackKey, targets: Targets, *, facts: bool = False) -> None:
        self._targets[stack] = targets
        if facts:
            self._facts.add(stack)
        else:
            self._facts.discard(stack)

    def remove(self, stack: StackKey) -> None:
        self._targets.pop(stack, None)
        self._facts.discard(stack)

    def get(self, stack: StackKey) -> Targets | None:
        return self._targets.get(stack)

    def __len__(self) -> int:
        return len(self._targets)

    def targeting(self, cluster: Cluster) -> StackKeys:
        """Stacks whose targets name or select `cluster` (ready or not)."""
        return {
            stack for stack, targets in self._targets.items() if targets_match(targets, cluster)
        }

    def affected(self, before: Cluster | None, after: Cluster | None) -> StackKeys:
        """Stacks to reconcile after a cluster went from `before` to `after` (None: absent)."""
        changed = relabelled = False
        if before is not None and after is not None:
            changed = _material_change(before, after)
            relabelled = (dict(before.labels), before.name) != (dict(after.labels), after.name)
        stacks: StackKeys = set()
        for stack, targets in self._targets.items():
            was = before is not None and targets_match(targets, before)
            now = after is not None and targets_match(targets, after)
            facts = relabelled and stack in self._facts
            if was != now or (was and (changed or facts)):
                stacks.add(stack)
        return stacks


def _material_change(before: Cluster, after: Cluster) -> bool:
    """A change that matters to a Stack targeting the cluster both before and after."""
    return (
        before.ready != after.ready
        or before.id != after.id
        or before.kubeconfig != after.kubeconfig
    )
