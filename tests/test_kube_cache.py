"""helm's client-go cache per cluster and identity, bounded (`herd.helm.kube_cache`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from herd.helm import kube_cache
from herd.helm.environment import HelmDialect, HelmEnvironment
from herd.helm.kube_cache import KubeCaches, key
from herd.settings import HelmSettings


def test_the_key_tells_clusters_credentials_and_identities_apart() -> None:
    base = key("c1", b"server: https://a", None)
    others = [
        key("c2", b"server: https://a", None),  # another cluster at the same address
        key("c1", b"server: https://b", None),  # the same name, another kubeconfig
        key("c1", b"server: https://a", "system:serviceaccount:herd-tenants:tenant-x"),
        key("c1", b"server: https://a", "u", ("g",)),
        key("c1", b"server: https://a", "u", ()),
    ]
    assert len({base, *others}) == len(others) + 1
    assert key("c1", b"server: https://a", None) == base  # stable
    # Length-prefixed parts: moving bytes from one part to the next changes the key.
    assert key("ab", b"c", None) != key("a", b"bc", None)
    assert key("c", b"k", "u", ("g1", "g2")) != key("c", b"k", "u", ("g1g2",))


def fill(path: Path, size: int) -> None:
    (path / "discovery").mkdir(parents=True, exist_ok=True)
    (path / "discovery" / "servergroups.json").write_bytes(b"x" * size)


def test_a_new_cache_prunes_the_least_recently_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_cache, "PRUNE_SECONDS", 0.0)
    caches = KubeCaches(tmp_path / "kube", limit=2500)
    for age, name in enumerate(("old", "mid", "new")):
        fill(caches.directory(name), 1000)
        os.utime(caches.root / name, (1000 + age, 1000 + age))
    current = caches.directory("another")
    assert stat.S_IMODE(current.stat().st_mode) == 0o700
    left = sorted(p.name for p in caches.root.iterdir())
    assert left == ["another", "mid", "new"]  # 2000 bytes: under the limit without "old"
    # The one asked for is never removed, however large; the others go.
    fill(current, 10_000)
    again = KubeCaches(caches.root, limit=2500)  # a restarted process: "another" is new to it
    assert again.directory("another") == current
    assert sorted(p.name for p in caches.root.iterdir()) == ["another"]


def test_a_cache_in_use_is_kept_and_made_again(tmp_path: Path) -> None:
    caches = KubeCaches(tmp_path / "kube", limit=0)
    first = caches.directory("one")
    first.rmdir()  # removed under the process: made again on next use
    assert caches.directory("one").is_dir()


def test_helm_never_uses_the_users_kube_cache(tmp_path: Path) -> None:
    env = HelmEnvironment(tmp_path / "home", settings=HelmSettings(executable="/bin/true"))
    try:
        unused = Path(env.environment["KUBECACHEDIR"])
        assert unused.is_dir() and tmp_path in unused.parents
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text("server: https://a\n")
        cache = env.kube_cache("c1", kubeconfig, None)
        assert env.kube_caches.root in cache.parents
        assert cache != env.kube_cache("c1", kubeconfig, "tenant")
        assert env.command({"KUBECACHEDIR": str(cache)})._environment["KUBECACHEDIR"] == str(cache)
        assert env.command()._environment["KUBECACHEDIR"] == str(unused)
    finally:
        env.close()


def test_helm4_upgrades_skip_the_client_side_openapi_check() -> None:
    assert HelmDialect(4).client_validation == ["--disable-openapi-validation"]
    assert HelmDialect(3).client_validation == []
