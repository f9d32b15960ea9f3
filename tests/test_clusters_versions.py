"""The inventory's cache by resourceVersion (`herd.clusters.versions`): pure decisions.

The listing and the reads it saves are measured on the test bed: see
`e2e/test_inventory_cache.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herd.clusters.objects import rancher_cluster, secret_cluster, secret_key
from herd.clusters.versions import SecretKeys, versions_of, with_secret_version
from herd.plan.clusters import Cluster, KubeconfigRef


def meta(name: str, version: str = "", **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version, **extra}}


def test_versions_of_reads_names_and_versions_and_skips_nameless_items() -> None:
    items = [meta("a", "10"), meta("b"), {"metadata": {}}, {}]
    assert versions_of(items) == {"a": "10", "b": ""}


def rancher(name: str, version: str = "") -> Cluster:
    body = {
        "metadata": {"name": name, "namespace": "fleet-default"},
        "status": {"clusterName": f"c-{name}", "ready": True},
    }
    cluster = rancher_cluster(body)
    if version:
        return with_secret_version(cluster, {f"{name}-kubeconfig": version})
    return cluster


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ({"a-kubeconfig": "7"}, "7"),
        ({"other-kubeconfig": "7"}, ""),  # not listed: the store reads the Secret
        ({"a-kubeconfig": ""}, ""),
        ({}, ""),
    ],
)
def test_rancher_ref_gets_its_secret_version_from_the_listing(
    versions: dict[str, str], expected: str
) -> None:
    cluster = with_secret_version(rancher("a"), versions)
    assert cluster.kubeconfig.resource_version == expected
    assert cluster.kubeconfig.location == rancher("a").kubeconfig.location
    assert (cluster.id, cluster.ready, dict(cluster.labels)) == ("c-a", True, {})


def test_a_known_version_or_a_file_ref_is_left_alone() -> None:
    stamped = rancher("a", "3")
    assert with_secret_version(stamped, {"a-kubeconfig": "9"}) is stamped
    file = Cluster("f", "f", {}, True, "file", KubeconfigRef.file(Path("/k")))
    assert with_secret_version(file, {"k": "1"}) is file


KEYS = {"a": ("1", "kubeconfig"), "b": ("5", "value")}


@pytest.mark.parametrize(
    ("listed", "current"),
    [
        ({"a": "1", "b": "5"}, True),  # no-op pass: metadata is enough
        ({"a": "1"}, True),  # b removed: nothing to read
        ({}, True),
        ({"a": "2", "b": "5"}, False),  # a rotated
        ({"a": "1", "b": "5", "c": "9"}, False),  # c added
        ({"a": "", "b": "5"}, False),  # a version unknown: read
    ],
)
def test_secret_keys_say_when_metadata_is_enough(listed: dict[str, str], current: bool) -> None:
    keys = SecretKeys()
    keys.replace(KEYS)
    assert keys.current(listed) is current


def test_secret_keys_start_empty_and_a_full_listing_replaces_them() -> None:
    keys = SecretKeys()
    assert not keys.current({"a": "1"})
    assert keys.current({})
    keys.replace(KEYS)
    assert (keys.key("a", "1"), keys.key("b", "5"), keys.key("a", "2")) == (
        "kubeconfig",
        "value",
        None,
    )
    keys.replace({"b": ("6", "value")})
    assert (len(keys), keys.key("a", "1"), keys.key("b", "6")) == (1, None, "value")


def test_secret_cluster_from_metadata_and_a_remembered_key_equals_the_full_read() -> None:
    full = {
        **meta(
            "edge",
            "42",
            namespace="herd-system",
            labels={"env": "prod", "herd.suse.com/cluster": "true"},
            annotations={"herd.suse.com/cluster-id": "edge-1"},
        ),
        "data": {"value": "c2VjcmV0"},
    }
    metadata_only = {"metadata": full["metadata"]}
    assert secret_key(full) == "value"
    assert secret_cluster(metadata_only, secret_key(full)) == secret_cluster(full)
    assert secret_cluster(metadata_only).kubeconfig.key == "kubeconfig"  # the default
