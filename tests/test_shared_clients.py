"""`herd.kube.shared`: one client per kubeconfig file version, bounded, closed when retired.

Building a client connects to nothing, so these run without a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import yaml
from kubernetes import client

from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmEnvironment
from herd.kube.shared import SharedClients


def kubeconfig(path: Path, server: str = "https://127.0.0.1:6443", token: str = "t") -> Path:
    """Write `path` as the kubeconfig store does: a new file renamed over the old one."""
    body = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    staged = path.with_suffix(".new")
    staged.write_text(yaml.safe_dump(body))
    os.replace(staged, path)
    return path


def closed(api: client.ApiClient) -> list[bool]:
    closes: list[bool] = []
    original = api.close

    def close() -> None:
        closes.append(True)
        original()  # type: ignore[no-untyped-call]

    api.close = close  # type: ignore[method-assign]
    return closes


def test_the_same_file_gives_the_same_client(tmp_path: Path) -> None:
    shared = SharedClients()
    path = kubeconfig(tmp_path / "a.kubeconfig")
    first = shared.get(path)
    assert shared.get(path) is first
    assert len(shared) == 1


def test_a_rotated_kubeconfig_gets_a_new_client_and_the_old_one_is_closed(
    tmp_path: Path,
) -> None:
    shared = SharedClients()
    path = kubeconfig(tmp_path / "a.kubeconfig", token="old")
    old = shared.get(path)
    closes = closed(old)
    kubeconfig(path, token="rotated")
    new = shared.get(path)
    assert new is not old
    assert new.configuration.api_key["BearerToken"] == "Bearer rotated"
    assert closes == [True]
    assert len(shared) == 1


def test_each_file_has_its_own_client(tmp_path: Path) -> None:
    shared = SharedClients()
    a = shared.get(kubeconfig(tmp_path / "a.kubeconfig", server="https://127.0.0.1:1"))
    b = shared.get(kubeconfig(tmp_path / "b.kubeconfig", server="https://127.0.0.1:2"))
    assert a is not b
    assert (a.configuration.host, b.configuration.host) == (
        "https://127.0.0.1:1",
        "https://127.0.0.1:2",
    )


def test_the_least_recently_used_client_is_closed_past_the_limit(tmp_path: Path) -> None:
    shared = SharedClients(limit=2)
    paths = [kubeconfig(tmp_path / f"{n}.kubeconfig") for n in "abc"]
    a, b = shared.get(paths[0]), shared.get(paths[1])
    closes_a, closes_b = closed(a), closed(b)
    shared.get(paths[0])  # a is used again: b is now the oldest
    shared.get(paths[2])
    assert (closes_a, closes_b) == ([], [True])
    assert len(shared) == 2
    shared.clear()
    assert closes_a == [True]
    assert len(shared) == 0


def test_a_missing_file_raises_and_is_not_kept(tmp_path: Path) -> None:
    shared = SharedClients()
    try:
        shared.get(tmp_path / "gone.kubeconfig")
    except OSError:
        pass
    else:
        raise AssertionError("expected OSError")
    assert len(shared) == 0


def test_passes_share_a_clusters_client_and_closing_a_pass_keeps_it(tmp_path: Path) -> None:
    """Each pass makes its own `ClusterHelm`; they read through one client (one TLS
    connection per cluster, not one per pass), which closing a pass's helm leaves open."""
    path = kubeconfig(tmp_path / "a.kubeconfig")
    first = ClusterHelm(cast(HelmEnvironment, None), "a", path)
    api = first._core().api_client
    closes = closed(api)
    first.close()
    second = ClusterHelm(cast(HelmEnvironment, None), "a", path)
    assert second._core().api_client is api
    assert closes == []
