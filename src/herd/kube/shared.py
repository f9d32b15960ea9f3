"""One API client per downstream kubeconfig file, shared by the process: `shared_client`.

A client made for one call costs a kubeconfig parse, an SSL context and a new TLS
connection: measured on a test-bed cluster, about 5 ms of Herd's CPU (and 1.5 ms of the
API server's) per client, against 0.6-1 ms for the list call itself. A pass made one per
cluster for the release Secrets, and the CLI one more per ownership and last-good record:
half of the controller's no-op pass. Shared, a cluster's reads and writes reuse one
connection pool across passes.

A client is keyed by the file as it is now (path, inode, mtime, size): the kubeconfig
store rewrites a rotated kubeconfig by atomic rename (`herd.clusters.kubeconfigs`), so a
rotation makes a new client and retires the old one. Shared clients carry the
kubeconfig's own identity only: a caller that adds headers (impersonation) makes a client
of its own (`herd.kube.client.api_client_from_kubeconfig`) and closes it. The cache is
bounded; the least recently used client is closed when it overflows (a request in flight
on it finishes: closing only drops the idle connections).

Callers: `herd.helm.client.ClusterHelm`, `herd.kube.owned`, `herd.kube.lastgood`, the
drift check (`herd.rollout.drift`) and the add-ons' downstream reads
(`herd.kube.client.kubeconfig_client`). Blocking (a file stat, and a parse on a miss).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from kubernetes import client

from herd.errors import TransientError
from herd.kube.client import api_client_from_kubeconfig

LIMIT = 128  # clients kept: more than HERD_MAX_CLUSTERS' passes touch at once

Key = tuple[str, int, int, int]


class SharedClients:
    """A bounded cache of API clients by kubeconfig file version (see the module)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._clients: OrderedDict[Key, client.ApiClient] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> client.ApiClient:
        """The client of `path` as the file is now; raises what building one raises
        (`OSError` for a missing file, the client's `ConfigException`)."""
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
        made = api_client_from_kubeconfig(path)  # outside the lock: it parses a file
        retired: list[client.ApiClient] = []
        with self._lock:
            found = self._clients.get(key)
            if found is not None:  # another thread made it meanwhile
                retired.append(made)
                made = found
            else:
                # An older version of the same file (a rotation) is never used again.
                retired += [self._clients.pop(k) for k in list(self._clients) if k[0] == key[0]]
                self._clients[key] = made
                while len(self._clients) > self._limit:
                    retired.append(self._clients.popitem(last=False)[1])
        for old in retired:
            old.close()  # type: ignore[no-untyped-call]
        return made

    def __len__(self) -> int:
        return len(self._clients)

    def clear(self) -> None:
        """Close every client (the process is stopping)."""
        with self._lock:
            retired = list(self._clients.values())
            self._clients.clear()
        for old in retired:
            old.close()  # type: ignore[no-untyped-call]


_SHARED = SharedClients()


def shared_client(path: Path) -> client.ApiClient:
    """The process's client for the kubeconfig at `path`: never close it, never add
    headers to it (see the module)."""
    return _SHARED.get(path)


def close_shared() -> None:
    _SHARED.clear()


class KubeconfigUnusable(TransientError):
    """A downstream kubeconfig does not make a client (the message never has its content)."""


@contextlib.contextmanager
def kubeconfig_client(path: Path) -> Iterator[client.ApiClient]:
    """The shared client of a cluster's kubeconfig file; `KubeconfigUnusable` when the file
    does not make one. For the add-ons' blocking reads and writes downstream."""
    try:
        api = shared_client(path)
    except Exception as error:  # ConfigException, YAML or file errors
        raise KubeconfigUnusable(f"kubeconfig unusable ({type(error).__name__})") from None
    yield api
