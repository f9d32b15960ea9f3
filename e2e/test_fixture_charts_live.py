"""The fixture charts behave on the test bed's clusters as the other e2e tests assume.

Plain helm against one real downstream control plane (kwok nodes), charts fetched from the
loopback repository with ``--repo``: the pre-install hook Job completes so the release
finishes, the CRD chart's Widget is created, two ``app`` releases share a namespace and
upgrade, and ``never-ready`` really makes ``helm --wait`` time out. When one of these
fails, the fixture is at fault, not Herd.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed.chartrepo import ChartRepo, helm_binary, helm_env, helm_list_all
from e2e.testbed.controlplane import Cluster


@pytest.fixture
def cluster(downstream: list[Cluster]) -> Cluster:
    return downstream[0]


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"fixtures-{uuid.uuid4().hex[:8]}"
    yield name
    # Deleting the namespace takes helm's release records with it, so later tests listing
    # releases on this shared cluster see none of ours.
    cluster.api.request("DELETE", f"/api/v1/namespaces/{name}")


def helm(
    cluster: Cluster, home: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [helm_binary(), "--kubeconfig", str(cluster.kubeconfig), *args],
        env=helm_env(home),
        capture_output=True,
        text=True,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def install(
    cluster: Cluster,
    home: Path,
    repo: ChartRepo,
    release: str,
    chart: str,
    version: str,
    namespace: str,
    *extra: str,
    timeout: str = "90s",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    return helm(
        cluster,
        home,
        "upgrade", "--install", release, chart,
        "--repo", repo.url, "--version", version,
        "--namespace", namespace, "--create-namespace",
        "--wait", "--timeout", timeout,
        *extra,
        check=check,
    )  # fmt: skip


def releases(cluster: Cluster, home: Path, namespace: str) -> dict[str, dict[str, Any]]:
    """Release name -> its ``helm list`` row (status, revision, chart, app_version)."""
    result = helm(cluster, home, *helm_list_all(), "--namespace", namespace, "-o", "json")
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_two_app_releases_install_side_by_side_and_upgrade(
    cluster: Cluster, chart_repo: ChartRepo, tmp_path: Path, namespace: str
) -> None:
    for release in ("one", "two"):
        install(cluster, tmp_path, chart_repo, release, "app", "0.1.0", namespace)

    install(cluster, tmp_path, chart_repo, "one", "app", "0.2.0", namespace, "--set", "message=v2")

    rows = releases(cluster, tmp_path, namespace)
    assert (rows["one"]["status"], rows["one"]["revision"]) == ("deployed", "2")
    assert rows["one"]["chart"] == "app-0.2.0"
    assert (rows["two"]["status"], rows["two"]["chart"]) == ("deployed", "app-0.1.0")


def test_hook_job_completes_so_the_release_deploys(
    cluster: Cluster, chart_repo: ChartRepo, tmp_path: Path, namespace: str
) -> None:
    install(cluster, tmp_path, chart_repo, "hooked", "with-hook", "0.1.0", namespace)

    assert releases(cluster, tmp_path, namespace)["hooked"]["status"] == "deployed"


def test_crd_chart_installs_its_crd_and_widget(
    cluster: Cluster, chart_repo: ChartRepo, tmp_path: Path, namespace: str
) -> None:
    install(cluster, tmp_path, chart_repo, "widgets", "with-crd", "0.1.0", namespace)

    manifest = helm(cluster, tmp_path, "get", "manifest", "widgets", "--namespace", namespace)
    assert "kind: Widget" in manifest.stdout


def test_add_on_stand_ins_become_ready(
    cluster: Cluster, chart_repo: ChartRepo, tmp_path: Path, namespace: str
) -> None:
    install(cluster, tmp_path, chart_repo, "neuvector", "core", "2.8.6", namespace)
    install(
        cluster, tmp_path, chart_repo, "agent", "suse-observability-agent", "1.2.16", namespace,
        "--set", "stackstate.cluster.name=c-m-test0001",
        "--set", "stackstate.url=https://observability.example.com/receiver/stsAgent",
    )  # fmt: skip

    rows = releases(cluster, tmp_path, namespace)
    assert {rows[name]["status"] for name in ("neuvector", "agent")} == {"deployed"}


def test_never_ready_makes_helm_wait_time_out(
    cluster: Cluster, chart_repo: ChartRepo, tmp_path: Path, namespace: str
) -> None:
    result = install(
        cluster, tmp_path, chart_repo, "stuck", "never-ready", "0.1.0", namespace,
        timeout="5s", check=False,
    )  # fmt: skip

    assert result.returncode != 0
    assert "context deadline exceeded" in result.stderr
    assert releases(cluster, tmp_path, namespace)["stuck"]["status"] == "failed"
