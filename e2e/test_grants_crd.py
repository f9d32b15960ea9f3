"""The generated ClusterGrant CRD on a real API server: it installs cluster-scoped, rejects
obviously bad grants at `kubectl apply` time, prints its columns and explains itself."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl_run, wait_established
from herd.kube.client import api_client_from_kubeconfig
from herd.kube.grants import list_grants

ROOT = Path(__file__).resolve().parent.parent
CRD_FILE = ROOT / "crds" / "herd.suse.com_clustergrants.yaml"


@pytest.fixture(scope="module")
def api(management: BedCluster) -> BedCluster:
    done = kubectl_run(management, "apply", "-f", str(CRD_FILE))
    assert done.returncode == 0, done.stderr
    wait_established(management, "clustergrants.herd.suse.com")
    return management


def grant(name: str = "team-a", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": name},
        "spec": {
            "namespaces": ["team-a"],
            "clusters": {"selector": {"matchLabels": {"env": "staging"}}},
            "targetNamespaces": ["team-a", "team-a-*"],
            **spec,
        },
    }


def apply(api: BedCluster, body: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    return kubectl_run(api, "apply", *flags, "-f", "-", stdin=yaml.safe_dump(body))


def test_the_example_grant_is_accepted(api: BedCluster) -> None:
    done = apply(
        api,
        yaml.safe_load((ROOT / "examples" / "grant-default.yaml").read_text()),
        "--dry-run=server",
    )
    assert done.returncode == 0, done.stderr


def test_grants_are_cluster_scoped_with_safe_defaults(api: BedCluster) -> None:
    done = apply(api, grant("defaults"))
    assert done.returncode == 0, done.stderr
    try:
        stored = kubectl_run(api, "get", "clustergrant", "defaults", "-o", "yaml")
        assert stored.returncode == 0, stored.stderr
        body = yaml.safe_load(stored.stdout)
        assert "namespace" not in body["metadata"]
        assert body["spec"]["clusterScopedResources"] is False
        assert body["spec"]["addons"] is False
    finally:
        kubectl_run(api, "delete", "clustergrant", "defaults", "--wait=false")


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"namespaces": []}, "spec.namespaces"),
        ({"clusters": {}}, "spec.clusters"),
        ({"namespaces": ["Team_A"]}, "spec.namespaces[0]"),
        ({"targetNamespaces": ["team a"]}, "spec.targetNamespaces[0]"),
        ({"clusterScopedResources": "maybe"}, "spec.clusterScopedResources"),
        (
            {"clusters": {"selector": {"matchExpressions": [{"key": "env", "operator": "Near"}]}}},
            "spec.clusters.selector.matchExpressions[0].operator",
        ),
    ],
)
def test_bad_grants_are_rejected_at_apply(
    api: BedCluster, spec: dict[str, Any], complaint: str
) -> None:
    done = apply(api, grant(**spec), "--dry-run=server")
    assert done.returncode != 0
    assert complaint in done.stderr, done.stderr


def test_unknown_fields_are_refused(api: BedCluster) -> None:
    body = grant()
    body["spec"]["clusterIds"] = ["c-m-1"]  # belongs under spec.clusters
    done = apply(api, body, "--dry-run=server", "--validate=strict")
    assert done.returncode != 0
    assert "clusterIds" in done.stderr, done.stderr


def test_printer_columns_and_explain(api: BedCluster) -> None:
    done = apply(api, grant("columns", clusters={"clusterIds": ["c-m-1"]}))
    assert done.returncode == 0, done.stderr
    try:
        listed = kubectl_run(api, "get", "clustergrants")
        assert listed.returncode == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        assert header.split() == ["NAME", "NAMESPACES", "CLUSTERS", "AGE"]
        row = next(r for r in rows if r.startswith("columns "))
        assert "team-a" in row and "c-m-1" in row, row
    finally:
        kubectl_run(api, "delete", "clustergrant", "columns", "--wait=false")
    explained = kubectl_run(api, "explain", "clustergrant.spec")
    assert explained.returncode == 0, explained.stderr
    for field in ("namespaces", "clusters", "targetNamespaces", "clusterScopedResources", "addons"):
        assert field in explained.stdout, explained.stdout
    assert "Stack namespaces" in explained.stdout, explained.stdout
    explained = kubectl_run(api, "explain", "clustergrant.spec.targetNamespaces")
    assert "globs" in explained.stdout, explained.stdout


def test_list_grants_reads_them_fresh(api: BedCluster) -> None:
    done = apply(api, grant("listed", clusters={"clusterIds": ["c-m-1"]}, addons=True))
    assert done.returncode == 0, done.stderr
    kube = api_client_from_kubeconfig(api.kubeconfig)
    try:
        grants, invalid = list_grants(kube)
        (listed,) = [g for g in grants if g.name == "listed"]
        assert listed.spec.addons is True
        assert listed.spec.clusters.cluster_ids == ["c-m-1"]
        assert invalid == []
        kubectl_run(api, "delete", "clustergrant", "listed")
        grants, _ = list_grants(kube)
        assert "listed" not in [g.name for g in grants]
    finally:
        kube.close()
        kubectl_run(api, "delete", "clustergrant", "listed", "--ignore-not-found")
