"""What Herd knows about a target cluster: identity, labels, readiness, and where its
kubeconfig lives — never the kubeconfig itself.

Data only, no I/O. Built by the cluster sources (`herd.clusters.sources`,
`herd.clusters.files`, or the operator from watch events via `herd.clusters.objects`), read
by target resolution (`herd.plan.targets`), the fleet index (`herd.operator.index`) and
the kubeconfig store (`herd.clusters.kubeconfigs`), which alone turns a `KubeconfigRef` into
a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from herd.api import SkippedCluster
from herd.errors import TransientError

Source = Literal["rancher", "secret", "file"]


@dataclass(frozen=True)
class KubeconfigRef:
    """Where a cluster's kubeconfig is: a Secret key, or a file (and context).

    Build one with `KubeconfigRef.secret(...)` or `KubeconfigRef.file(...)`. The
    `resource_version` of a Secret ref is the version the source saw ("" when unknown); the
    kubeconfig store uses it to reuse a file, the fleet index to notice a rotation.
    """

    namespace: str = ""
    name: str = ""
    key: str = ""
    resource_version: str = ""
    path: Path | None = None
    context: str | None = None

    @classmethod
    def secret(
        cls, namespace: str, name: str, key: str, resource_version: str = ""
    ) -> KubeconfigRef:
        return cls(namespace=namespace, name=name, key=key, resource_version=resource_version)

    @classmethod
    def file(cls, path: Path, context: str | None = None) -> KubeconfigRef:
        return cls(path=path, context=context)

    @property
    def is_secret(self) -> bool:
        return self.path is None

    @property
    def location(self) -> KubeconfigRef:
        """The same ref without its resource version: equal while it points at the same place."""
        return dataclasses.replace(self, resource_version="")

    def describe(self) -> str:
        """Where the kubeconfig is, for logs, events and status; never its content."""
        if self.path is None:
            return f"Secret {self.namespace}/{self.name}, key {self.key}"
        if self.context:
            return f"file {self.path}, context {self.context}"
        return f"file {self.path}"


@dataclass(frozen=True)
class Cluster:
    """One downstream cluster as a source lists it."""

    id: str
    name: str
    labels: Mapping[str, str] = field(hash=False)
    ready: bool
    source: Source
    kubeconfig: KubeconfigRef
    not_ready: str = ""  # why it is not ready, when its source says (e.g. a False condition)
    # Its Prometheus's base URL, from `herd.names.PROMETHEUS_URL_ANNOTATION` on its object
    # ("" = none: `herd.addons.prometheus` then asks the configured Service through its proxy).
    prometheus_url: str = ""

    def __post_init__(self) -> None:
        # A read-only copy: a Cluster is a snapshot, so later edits of the caller's dict
        # must not change which stacks it matches.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def __str__(self) -> str:
        return self.id if self.id == self.name else f"{self.id} ({self.name})"


class ClusterUnavailable(TransientError):
    """One cluster cannot be used now (missing Secret, bad kubeconfig, ...); others go on.

    `reason` is written for users and never contains kubeconfig content, tokens or Secret
    data: it names the cluster and where its kubeconfig was looked for.
    """

    def __init__(self, cluster_id: str, reason: str) -> None:
        self.cluster_id = cluster_id
        self.reason = reason
        super().__init__(f"cluster {cluster_id}: {reason}")

    def skipped(self) -> SkippedCluster:
        """The status row saying why this cluster was skipped."""
        return SkippedCluster(cluster_id=self.cluster_id, reason=self.reason)
