"""client-go's discovery and HTTP cache for helm, one per cluster and identity: `KubeCaches`.

helm builds its Kubernetes client with client-go's `genericclioptions`, which keeps API
discovery and HTTP responses (OpenAPI documents, served at content-addressed URLs) on disk
under `$KUBECACHEDIR` (default `~/.kube/cache`), in directories named after the API
server's URL alone. Left there, every helm process of a controller would share one cache
for all clusters keyed by a URL (two clusters behind one address, a port reused on a test
bed, a cluster re-registered at the same URL would read each other's API resources), and
it would grow without bound in the container's `/tmp`.

So each helm process that talks to a cluster gets `KUBECACHEDIR` set to a directory of its
own (cluster, credentials, identity): `key` hashes the cluster's id, the bytes of the
kubeconfig helm is given (server, CA, credentials) and the identity helm impersonates.
A tenant's helm and the admin's do not share a cache: discovery is not filtered by RBAC
today, but an aggregated API server may answer per user, and a cache one identity wrote
must not feed another's client. The directories live under the helm home (the work
directory, emptied at start and removed with it; the CLI's temporary home), and
`KubeCaches` keeps them under `limit` bytes by removing the least recently used ones
whenever a new one is made.

Callers: `herd.helm.environment.HelmEnvironment` (for `herd.helm.client.ClusterHelm`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LIMIT = 64 * 1024 * 1024  # bytes of every cache together (the work dir is memory-backed)
PRUNE_SECONDS = 1.0  # at most one pass over the caches per interval (each walks every file)


def key(cluster: str, kubeconfig: bytes, user: str | None, groups: Sequence[str] = ()) -> str:
    """The cache directory's name: a digest of everything that decides what helm sees."""
    digest = hashlib.sha256()
    for part in (cluster.encode(), kubeconfig, (user or "").encode(), *map(str.encode, groups)):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no ambiguous joins
        digest.update(part)
    return digest.hexdigest()[:32]


def size(path: Path) -> int:
    """Bytes of the files under `path` (0 for what vanished while counting)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class KubeCaches:
    """Cache directories under `root`, one per `key`, at most `limit` bytes together."""

    def __init__(self, root: Path, limit: int = LIMIT) -> None:
        self.root = root
        self.limit = limit
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self._pruned = float("-inf")

    def directory(self, name: str) -> Path:
        """The directory for a key (made 0700 on first use, its time refreshed on each use
        for the least-recently-used order). Blocking: a new directory prunes the others
        (at most once per `PRUNE_SECONDS`, so the bound may be passed by the caches made
        within that time)."""
        path = self.root / name
        with self._lock:
            fresh = name not in self._known or not path.is_dir()
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.utime(path)
            if fresh:
                self._known.add(name)
                if time.monotonic() - self._pruned >= PRUNE_SECONDS:
                    self._pruned = time.monotonic()
                    self.prune(keep=name)
        return path

    def prune(self, keep: str) -> None:
        """Remove the least recently used directories (never `keep`) until the rest fit."""
        entries = []
        for child in self.root.iterdir():
            if child.is_dir() and not child.is_symlink() and child.name != keep:
                entries.append((child.stat().st_mtime, size(child), child))
        total = size(self.root / keep) + sum(bytes_ for _, bytes_, _ in entries)
        for _, bytes_, child in sorted(entries):
            if total <= self.limit:
                break
            shutil.rmtree(child, ignore_errors=True)
            self._known.discard(child.name)
            total -= bytes_
