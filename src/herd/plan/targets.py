"""Which clusters a Stack's `targets` select, and why any targeted cluster is skipped.

Pure: no Kubernetes, no I/O; table-tested in `tests/test_clusters_targets.py`. Callers: the
engine (`herd.plan.desired`, via the operator and the CLI) resolves a Stack's targets against the
inventory's clusters on every pass; `herd.operator.index` uses `targets_match` to decide
which Stacks a cluster change affects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from herd.api import LabelSelector, LabelSelectorRequirement, SkippedCluster, Targets
from herd.plan.clusters import Cluster


def requirement_matches(requirement: LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    """One matchExpressions entry, with Kubernetes semantics (NotIn holds for a missing key)."""
    present = requirement.key in labels
    match requirement.operator:
        case "In":
            return present and labels[requirement.key] in requirement.values
        case "NotIn":
            return not present or labels[requirement.key] not in requirement.values
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
    raise ValueError(f"unknown selector operator {requirement.operator!r}")


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """True when `labels` satisfy every matchLabels pair and every matchExpressions entry."""
    return all(labels.get(key) == value for key, value in selector.match_labels.items()) and all(
        requirement_matches(requirement, labels) for requirement in selector.match_expressions
    )


def targets_match(targets: Targets, cluster: Cluster) -> bool:
    """True when `targets` name this cluster (by id or name) or select it by label.

    Readiness plays no part: a targeted cluster that is not ready is targeted and skipped.
    """
    if cluster.id in targets.cluster_ids or cluster.name in targets.cluster_ids:
        return True
    return targets.selector is not None and selector_matches(targets.selector, cluster.labels)


@dataclass
class Resolution:
    """Clusters to deploy to now, and the targeted ones that cannot be used (with a reason)."""

    clusters: list[Cluster] = field(default_factory=list)
    skipped: list[SkippedCluster] = field(default_factory=list)

    @property
    def cluster_ids(self) -> list[str]:
        return [cluster.id for cluster in self.clusters]


def resolve_targets(targets: Targets, clusters: Sequence[Cluster]) -> Resolution:
    """Resolve `targets` against the known clusters.

    A clusterId matches a cluster's id, else its name (an unknown or ambiguous one is
    skipped with a reason); the selector's clusters are added (union); targeted clusters
    that are not ready are skipped. Both lists are ordered by cluster id.
    """
    chosen: dict[str, Cluster] = {}
    skipped: dict[str, SkippedCluster] = {}
    for wanted in dict.fromkeys(targets.cluster_ids):
        found = _by_id_or_name(wanted, clusters)
        if len(found) == 1:
            chosen.setdefault(found[0].id, found[0])
        elif not found:
            skipped[wanted] = SkippedCluster(
                cluster_id=wanted, reason="no known cluster has this id or name"
            )
        else:
            ids = ", ".join(sorted(cluster.id for cluster in found))
            skipped[wanted] = SkippedCluster(
                cluster_id=wanted,
                reason=f"name matches several clusters ({ids}); target one by its id",
            )
    if targets.selector is not None:
        for cluster in clusters:
            if selector_matches(targets.selector, cluster.labels):
                chosen.setdefault(cluster.id, cluster)
    ready: list[Cluster] = []
    for cluster in chosen.values():
        if cluster.ready:
            ready.append(cluster)
        else:
            reason = f"cluster {cluster.name} is not ready"
            if cluster.not_ready:
                reason = f"{reason}: {cluster.not_ready}"
            skipped[cluster.id] = SkippedCluster(cluster_id=cluster.id, reason=reason)
    return Resolution(
        clusters=sorted(ready, key=lambda cluster: cluster.id),
        skipped=[skipped[key] for key in sorted(skipped)],
    )


def _by_id_or_name(wanted: str, clusters: Sequence[Cluster]) -> list[Cluster]:
    by_id = [cluster for cluster in clusters if cluster.id == wanted]
    return by_id or [cluster for cluster in clusters if cluster.name == wanted]
