"""The local test bed does what the other e2e tests rely on.

Real apiservers answer with the real version, the controllers and kwok turn
Deployments Available and Jobs Complete, clusters are isolated from each other,
an apiserver outage can be simulated and recovered, `helm --wait` installs a fixture
chart for real, and `up`/`down` leave nothing running behind.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from e2e.testbed import processes
from e2e.testbed.binaries import KUBERNETES_VERSION
from e2e.testbed.chartrepo import helm_binary, helm_env
from e2e.testbed.controlplane import FAKE_NODES, Cluster, TestBed
from e2e.testbed.helpers import kubectl, kubectl_run

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parent.parent


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(kubectl(cluster, *args, "-o", "json"))
    return result


def test_every_cluster_is_ready_with_fake_nodes(testbed: TestBed) -> None:
    assert set(testbed.clusters) == {"management", "downstream-1", "downstream-2", "downstream-3"}
    for cluster in testbed.clusters.values():
        assert cluster.ready(), cluster.name
        assert stat.S_IMODE(cluster.kubeconfig.stat().st_mode) == 0o600
        nodes = kubectl_json(cluster, "get", "nodes")["items"]
        assert isinstance(nodes, list)
        # Other tests of the session may add nodes of their own; the bed's are these.
        fake = {n["metadata"]["name"] for n in nodes} & set(FAKE_NODES)
        assert fake == set(FAKE_NODES), cluster.name
        for node in (n for n in nodes if n["metadata"]["name"] in fake):
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True", node["metadata"]["name"]


def test_apiservers_report_the_real_version(testbed: TestBed) -> None:
    for cluster in testbed.clusters.values():
        version = kubectl_json(cluster, "version")["serverVersion"]
        assert isinstance(version, dict)
        assert version["gitVersion"] == KUBERNETES_VERSION, cluster.name


def test_clusters_do_not_share_objects(downstream: list[Cluster]) -> None:
    first, second = downstream[0], downstream[1]
    kubectl(first, "create", "namespace", "only-in-first")
    assert kubectl_run(second, "get", "namespace", "only-in-first").returncode != 0


def test_deployment_becomes_available(downstream: list[Cluster]) -> None:
    cluster = downstream[0]
    kubectl(
        cluster, "create", "deployment", "web", "--image=registry.example.com/web:1", "--replicas=2"
    )
    kubectl(cluster, "wait", "--for=condition=Available", "deployment/web", "--timeout=60s")
    status = kubectl_json(cluster, "get", "deployment", "web")["status"]
    assert isinstance(status, dict) and status["readyReplicas"] == 2


def test_job_completes(downstream: list[Cluster]) -> None:
    cluster = downstream[1]
    kubectl(cluster, "create", "job", "once", "--image=registry.example.com/job:1")
    kubectl(cluster, "wait", "--for=condition=Complete", "job/once", "--timeout=60s")
    status = kubectl_json(cluster, "get", "job", "once")["status"]
    assert isinstance(status, dict) and status["succeeded"] == 1


def test_apiserver_outage_and_recovery_keep_data(downstream: list[Cluster]) -> None:
    cluster = downstream[2]
    kubectl(cluster, "create", "configmap", "survivor", "--from-literal=k=v")
    cluster.stop_apiserver()
    assert not cluster.ready()
    assert kubectl_run(cluster, "get", "configmap", "survivor").returncode != 0

    cluster.start_apiserver()
    data = kubectl_json(cluster, "get", "configmap", "survivor")["data"]
    assert data == {"k": "v"}


def test_helm_install_wait_into_two_clusters(
    downstream: list[Cluster], chart_repo_url: str, tmp_path: Path
) -> None:
    def install(cluster: Cluster) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                helm_binary(),
                "upgrade",
                "--install",
                "hello",
                "app",
                "--repo",
                chart_repo_url,
                "--version",
                "0.1.0",
                "--namespace",
                "hello",
                "--create-namespace",
                "--wait",
                "--timeout",
                "2m",
                "--kubeconfig",
                str(cluster.kubeconfig),
            ],
            env=helm_env(tmp_path / cluster.name),
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )

    targets = downstream[:2]
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        results = list(pool.map(install, targets))
    for cluster, result in zip(targets, results, strict=True):
        assert result.returncode == 0, f"{cluster.name}: {result.stderr}"
        conditions = kubectl_json(cluster, "-n", "hello", "get", "deployment", "hello")
        status = conditions["status"]
        assert isinstance(status, dict)
        available = [c for c in status["conditions"] if c["type"] == "Available"]
        assert available and available[0]["status"] == "True", cluster.name


def test_up_and_down_leave_nothing_running(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cli = [sys.executable, "-m", "e2e.testbed"]
    up = subprocess.run(
        [*cli, "up", "--dir", str(workdir), "--downstream", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr
        # `up` has returned, yet its clusters still serve: they were detached.
        summary = json.loads((workdir / "testbed.json").read_text())
        assert set(summary["kubeconfigs"]) == {"management", "downstream-1"}
        for path in summary["kubeconfigs"].values():
            assert Path(path).is_file()
        assert "downstream-1/kube-apiserver" in processes.recorded_alive(workdir)
        ports = [int(url.rsplit(":", 1)[1]) for url in summary["servers"].values()]
        assert all(processes.port_open(port) for port in ports)
    finally:
        down = subprocess.run(
            [*cli, "down", "--dir", str(workdir)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert processes.recorded_alive(workdir) == []
    assert not any(processes.port_open(port) for port in ports)
