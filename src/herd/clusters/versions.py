"""The inventory's cache by resourceVersion: what a no-op pass can reuse without reading.

Pure. `herd.clusters.sources` lists Secrets metadata-only (names, labels, annotations,
resourceVersions; never values) once per pass and asks this module what it still knows:

- `SecretKeys` remembers, per kubeconfig Secret of the `SecretSource`, which data key holds
  the kubeconfig at which resourceVersion. While every listed Secret is at the version
  remembered, the clusters are built from metadata alone; any change (a new Secret, a
  rotation, a re-keyed one) makes the source list the Secrets once with their data.
- `with_secret_version` stamps a Rancher cluster's kubeconfig ref with its Secret's
  resourceVersion from that listing, so the kubeconfig store (`herd.clusters.kubeconfigs`)
  reuses its file without a GET per cluster.

So a no-op pass costs a fixed number of list calls per source namespace, whatever the
number of clusters; a changed Secret costs one read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from herd.plan.clusters import Cluster

Versions = Mapping[str, str]
"""Secret name -> resourceVersion, as one namespaced listing saw them."""


def versions_of(items: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Name -> resourceVersion of listed objects (metadata-only or full bodies)."""
    found: dict[str, str] = {}
    for item in items:
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name", ""))
        if name:
            found[name] = str(metadata.get("resourceVersion", ""))
    return found


def with_secret_version(cluster: Cluster, versions: Versions) -> Cluster:
    """`cluster` with its kubeconfig Secret's listed resourceVersion ("" if not listed,
    which makes the store read the Secret as before)."""
    ref = cluster.kubeconfig
    if not ref.is_secret or ref.resource_version:
        return cluster
    version = versions.get(ref.name, "")
    if not version:
        return cluster
    kubeconfig = dataclasses.replace(ref, resource_version=version)
    return dataclasses.replace(cluster, kubeconfig=kubeconfig)


class SecretKeys:
    """Which key of each cluster Secret holds its kubeconfig, at which resourceVersion."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, str]] = {}  # name -> (resourceVersion, key)

    def current(self, listed: Versions) -> bool:
        """True when every listed Secret is known at its listed version (and no version is
        unknown): the metadata listing is then enough to build the clusters."""
        return all(
            version and self.key(name, version) is not None for name, version in listed.items()
        )

    def key(self, name: str, version: str) -> str | None:
        known = self._known.get(name)
        if known is None or known[0] != version:
            return None
        return known[1]

    def replace(self, keys: Mapping[str, tuple[str, str]]) -> None:
        """What a full listing found: name -> (resourceVersion, key). Secrets it did not
        list are forgotten (deleted, or no longer labelled)."""
        self._known = dict(keys)

    def __len__(self) -> int:
        return len(self._known)
