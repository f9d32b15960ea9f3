"""Kubeconfig checks, the store on kubeconfig files, and objects → clusters.

The store's Secret side needs an API server: see `e2e/test_clusters.py`.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.clusters.kubeconfig_yaml import (
    InvalidKubeconfig,
    parse_kubeconfig,
    plugin_users,
    refuse_plugins,
    select_context,
)
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.objects import rancher_cluster, secret_cluster
from herd.plan.clusters import Cluster, ClusterUnavailable, KubeconfigRef

SECRET = "c2VjcmV0LXRva2VuLXZhbHVl"  # stands for key material that must never leak


def kubeconfig(*contexts: str, current: str | None = None, **user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": SECRET, **user}}],
        "contexts": [{"name": c, "context": {"cluster": "k", "user": "u"}} for c in contexts],
        **({"current-context": current} if current else {}),
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"users: [{{name: {SECRET}\n  bad", "is not valid YAML (line 2, column"),
        (f"- {SECRET}", "is not a kubeconfig (not a YAML mapping)"),
        (f"token: {SECRET}", "is not a kubeconfig (no clusters, users, contexts)"),
        ("clusters: [{name: k}]\nusers: []\ncontexts: [x]", "(no users, contexts)"),
    ],
)
def test_parse_errors_describe_shape_not_content(content: str, message: str) -> None:
    with pytest.raises(InvalidKubeconfig) as raised:
        parse_kubeconfig(content.encode())
    assert message in str(raised.value)
    assert SECRET not in str(raised.value)
    # PyYAML's own message quotes the offending line: it must not ride along as context.
    assert raised.value.__context__ is None or raised.value.__suppress_context__


@pytest.mark.parametrize(
    ("document", "context", "current"),
    [
        (kubeconfig("a", "b", current="a"), None, None),  # usable as is
        (kubeconfig("a", "b", current="a"), "a", None),
        (kubeconfig("a", "b", current="a"), "b", "b"),
        (kubeconfig("a"), None, "a"),  # the only context
        (kubeconfig("a", current="gone"), None, "a"),
    ],
)
def test_select_context(document: dict[str, Any], context: str | None, current: str | None) -> None:
    selected = select_context(document, context)
    assert (selected and selected["current-context"]) == current


@pytest.mark.parametrize(
    ("document", "context", "message"),
    [
        (kubeconfig("a", "b"), None, "has no usable current-context (contexts: a, b)"),
        (kubeconfig("a", current="a"), "z", "has no context 'z' (contexts: a)"),
        (
            {**kubeconfig("a", current="a"), "users": [{"name": "other"}]},
            None,
            "context 'a' refers to a user that is not defined",
        ),
    ],
)
def test_select_context_errors(document: dict[str, Any], context: str | None, message: str) -> None:
    with pytest.raises(InvalidKubeconfig, match=re.escape(message)):
        select_context(document, context)


def file_cluster(path: Path, context: str | None = None) -> Cluster:
    return Cluster("f", "f", {}, True, "file", KubeconfigRef.file(path, context))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_file_used_in_place_or_copied_0600_with_context(tmp_path: Path) -> None:
    source = tmp_path / "fleet.yaml"
    source.write_text(yaml.safe_dump(kubeconfig("a", "b", current="a", tokenFile="tok")))
    with KubeconfigStore(None, tmp_path / "store") as store:
        assert mode(store.directory) == 0o700
        assert await store.path(file_cluster(source)) == source
        copy = await store.path(file_cluster(source, "b"))
        assert copy.parent == store.directory
        assert mode(copy) == 0o600
        written = yaml.safe_load(copy.read_text())
        assert written["current-context"] == "b"
        assert written["users"][0]["user"]["tokenFile"] == str(tmp_path / "tok")
        assert await store.path(file_cluster(source, "b")) == copy  # reused
    assert not (tmp_path / "store").exists()
    assert source.exists()  # the user's file is never removed


async def test_file_problems_are_cluster_unavailable(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text(f"token: {SECRET}\n")
    with KubeconfigStore(None) as store:
        with pytest.raises(ClusterUnavailable) as raised:
            await store.path(file_cluster(tmp_path / "missing.yaml"))
        assert str(raised.value).startswith("cluster f: cannot read kubeconfig file ")
        with pytest.raises(ClusterUnavailable) as raised:
            await store.path(file_cluster(garbage))
        assert raised.value.reason == (
            f"the kubeconfig in file {garbage} is not a kubeconfig (no clusters, users, contexts)"
        )
        assert SECRET not in str(raised.value)
        assert raised.value.skipped().cluster_id == "f"


def test_a_fixed_directory_loses_what_a_crashed_run_left(tmp_path: Path) -> None:
    directory = tmp_path / "kubeconfigs"
    directory.mkdir()
    (directory / "c-1-abcd.kubeconfig").write_text(f"token: {SECRET}\n")
    (directory / ".writing-x1").write_text(f"token: {SECRET}\n")
    with KubeconfigStore(None, directory) as store:
        assert list(store.directory.iterdir()) == []
        assert mode(store.directory) == 0o700
    assert directory.exists()  # not ours to remove: the work directory's


def test_close_is_idempotent_and_removes_its_temp_directory() -> None:
    store = KubeconfigStore(None)
    assert mode(store.directory) == 0o700
    store.close()
    store.close()
    assert not store.directory.exists()


def test_rancher_cluster_from_provisioning_object() -> None:
    body: dict[str, Any] = {
        "metadata": {"name": "prod-1", "namespace": "fleet-default", "labels": {"env": "prod"}},
        "status": {"clusterName": "c-m-abc", "clientSecretName": "custom", "ready": True},
    }
    cluster = rancher_cluster(body)
    assert (cluster.id, cluster.name, dict(cluster.labels), cluster.ready) == (
        "c-m-abc",
        "prod-1",
        {"env": "prod"},
        True,
    )
    assert cluster.kubeconfig.describe() == "Secret fleet-default/custom, key value"
    deleting = {
        **body,
        "metadata": {**body["metadata"], "deletionTimestamp": "2025-01-01T00:00:00Z"},
    }
    assert rancher_cluster(deleting).ready is False
    provisioning = rancher_cluster({"metadata": {"name": "new", "namespace": "ws"}})
    assert (provisioning.id, provisioning.ready) == ("new", False)
    assert provisioning.kubeconfig.describe() == "Secret ws/new-kubeconfig, key value"


@pytest.mark.parametrize(
    ("data", "annotations", "cluster_id", "key"),
    [
        ({"kubeconfig": "x", "value": "y"}, {}, "edge-1", "kubeconfig"),
        ({"value": "y"}, {"herd.suse.com/cluster-id": "c-7"}, "c-7", "value"),
        ({}, {}, "edge-1", "kubeconfig"),  # reported by the store when used
    ],
)
def test_secret_cluster(
    data: dict[str, str], annotations: dict[str, str], cluster_id: str, key: str
) -> None:
    body = {
        "metadata": {
            "name": "edge-1",
            "namespace": "herd",
            "resourceVersion": "42",
            "labels": {"herd.suse.com/cluster": "true", "env": "dev"},
            "annotations": annotations,
        },
        "data": data,
    }
    cluster = secret_cluster(body)
    assert (cluster.id, cluster.name, dict(cluster.labels), cluster.ready) == (
        cluster_id,
        "edge-1",
        {"env": "dev"},
        True,
    )
    assert cluster.kubeconfig == KubeconfigRef.secret("herd", "edge-1", key, "42")


@pytest.mark.parametrize(
    ("user", "refused"),
    [
        ({}, False),
        ({"exec": {"command": "/bin/sh", "args": ["-c", "touch /tmp/x"]}}, True),
        ({"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}}, True),
        ({"exec": None}, False),  # an empty entry runs nothing
    ],
)
def test_plugin_users_are_refused_without_naming_content(
    user: dict[str, Any], refused: bool
) -> None:
    document = kubeconfig("a", current="a")
    document["users"][0]["user"].update(user)
    assert plugin_users(document) == (["u"] if refused else [])
    if not refused:
        refuse_plugins(document)
        return
    with pytest.raises(InvalidKubeconfig) as raised:
        refuse_plugins(document)
    assert "exec or auth-provider" in str(raised.value)
    assert "HERD_ALLOW_EXEC_KUBECONFIGS" in str(raised.value)
    assert SECRET not in str(raised.value) and "/bin/sh" not in str(raised.value)
