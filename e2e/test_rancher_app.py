"""Herd installed as a Rancher app, the way Rancher's Apps page does it (marker `rancher_real`).

A bed of its own (the management cluster only) with Rancher v2.15.0 on it, and one real
Node beside kwok's (`e2e.testbed.real_node`: kubelet, containerd, runc), on which Rancher's
helm operation pod really runs. Through Rancher's API, as the UI sends it: the
`shell-image` setting (the bed's stand-in, `e2e.testbed.shell_standin`: rancher/shell
cannot be pulled here), a ClusterRepo pointing at a chart repository serving
`install/helm/herd`, and the install action. Rancher renders the operation (its
`helm-cmd`, `proxy` and kubeconfig init containers, the chart in a Secret), the kubelet
runs it, helm installs the release through the pod's `kubectl proxy` impersonating the
admin, and Rancher's release watcher writes the App: it must say `deployed`, and the
release must be there.

kwok's fake nodes of this bed lose their `kubernetes.io/os` label, so the operation pod
(which selects `kubernetes.io/os: linux`) binds only to the real node, whose
control-plane taint the operation tolerates and the chart's own pods do not: Herd's
Deployment still goes to kwok's nodes (its image exists nowhere). Skips without the
Rancher binaries, like the rest of the lane. Figures go to `figures.json` in the lane's
temporary directory and `$HERD_RANCHER_APP_FIGURES` when set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed import (
    binaries,
    image,
    processes,
    rancher_apps,
    rancher_real,
    real_node,
    shell_standin,
)
from e2e.testbed.chartrepo import ChartRepo, package_charts, run_helm
from e2e.testbed.controlplane import FAKE_NODES, TestBed
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl

pytestmark = pytest.mark.rancher_real

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "install" / "helm" / "herd"
REPO = "herd-testbed"
NAMESPACE = "herd-system"
OPERATION_WAIT = 420.0


@dataclass
class AppLane:
    management: BedCluster
    rancher: rancher_real.RancherServer
    node: real_node.RealNode
    repo: ChartRepo
    workdir: Path
    figures: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppLane]:
    found, why = rancher_real.find_binaries()
    if found is None:
        pytest.skip(why)
    image.apt_install(real_node.missing(), lane="real node")
    tools = binaries.node_tools()
    workdir = tmp_path_factory.mktemp("rancher-app")
    archive = shell_standin.build(workdir / "image", tools["kubectl"])
    bed = TestBed.start(["management"], workdir / "bed", binaries=binaries.ensure())
    management = bed.clusters["management"]
    figures: dict[str, Any] = {"rancher_tag": rancher_real.RANCHER_TAG}
    node = real_node.RealNode(tools["kubelet"], management, workdir / "node",
                              shell_standin.REFERENCE)  # fmt: skip
    server: rancher_real.RancherServer | None = None
    repo = ChartRepo.serve(package_charts([CHART], workdir / "charts"))
    try:
        node.start_runtime()
        node.import_image(archive)
        node.start_kubelet()
        figures["node_ready_seconds"] = round(node.ready_seconds, 1)
        for fake in FAKE_NODES:  # the operation pod's nodeSelector now matches the real node only
            kubectl(management, "label", "node", fake, "kubernetes.io/os-")
        server = rancher_real.RancherServer(found.server, management, workdir)
        server.start()
        figures["rancher_start_seconds"] = round(server.start_seconds, 1)
        yield AppLane(management, server, node, repo, workdir, figures)
    finally:
        if server is not None:
            figures["rancher_rss_mib"] = round(server.rss_mib)
            server.stop()
        figures["node_rss_mib"] = {k: round(v) for k, v in node.overhead_mib().items()}
        node.stop()
        repo.stop()
        for recorded in (workdir, workdir / "node"):
            processes.kill_recorded(recorded)
        bed.stop()
        rancher_real.report_figures(
            figures, workdir, "HERD_RANCHER_APP_FIGURES", "Rancher app lane"
        )


def _jsonpath(cluster: BedCluster, *args: str) -> str:
    return kubectl(cluster, "get", *args, check=False).strip()


def test_herd_installs_from_rancher_apps_page(lane: AppLane) -> None:
    """ClusterRepo + install action through Rancher's API; the operation pod runs on the
    real node; the App turns `deployed`; the release and its Deployment exist."""
    api = rancher_apps.RancherApi(lane.rancher)
    api.set_setting("shell-image", shell_standin.REFERENCE)
    setting = ("settings.management.cattle.io", "shell-image", "-o", "jsonpath={.value}")
    eventually(
        "the shell-image setting",
        lambda: _jsonpath(lane.management, *setting) == shell_standin.REFERENCE,
        timeout=60,
    )
    api.add_cluster_repo(REPO, lane.repo.url)
    downloaded = ("clusterrepos.catalog.cattle.io", REPO, "-o", "jsonpath={.status.downloadTime}")
    eventually(
        "the ClusterRepo's index downloaded",
        lambda: bool(_jsonpath(lane.management, *downloaded)),
        timeout=120,
    )
    version = _chart_version()
    body = rancher_apps.install_body(REPO, "herd", version, NAMESPACE, {"replicas": 1})
    began = time.monotonic()
    operation = _operation_pod(lane, api.install(REPO, body))
    pod = _wait_operation(lane, operation)
    lane.figures["operation_to_deployed_seconds"] = round(time.monotonic() - began, 1)

    assert pod["spec"]["nodeName"] == real_node.NODE_NAME, pod["spec"]
    images = {c["image"] for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]}
    assert images == {shell_standin.REFERENCE}, images
    helm = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "helm")
    assert helm["state"]["terminated"]["exitCode"] == 0, helm
    log = lane.node.container_log(operation.namespace, operation.name, "helm")
    assert "SUCCESS: helm install" in log, log[-3000:]
    listed = [
        "list",
        "-n",
        NAMESPACE,
        "-o",
        "json",
        "--kubeconfig",
        str(lane.management.kubeconfig),
    ]
    releases = json.loads(run_helm(listed, lane.workdir).stdout)
    assert [(r["name"], r["status"], r["chart"]) for r in releases] == [
        ("herd", "deployed", f"herd-{version}")
    ], releases
    replicas = _jsonpath(lane.management, "deployment", "-n", NAMESPACE, "-l",
                         "app.kubernetes.io/instance=herd", "-o",
                         "jsonpath={.items[*].status.readyReplicas}")  # fmt: skip
    assert replicas == "1", replicas
    lane.figures["operation_pod_seconds"] = _pod_seconds(pod)


def _operation_pod(lane: AppLane, operation: rancher_apps.Operation) -> rancher_apps.Operation:
    """Where the operation runs: the Operation sits in the release's namespace and names its
    pod (in Rancher's own namespace) in `status.podNamespace/podName`
    (pkg/catalogv2/helmop/operation.go)."""
    where = ""

    def named() -> bool:
        nonlocal where
        where = _jsonpath(lane.management, "operations.catalog.cattle.io", operation.name, "-n",
                          operation.namespace, "-o",
                          "jsonpath={.status.podNamespace}/{.status.podName}")  # fmt: skip
        return where.strip("/") != "" and not where.startswith("/") and not where.endswith("/")

    eventually("the Operation names its pod", named, timeout=60)
    namespace, name = where.split("/", 1)
    return rancher_apps.Operation(namespace, name)


def _wait_operation(lane: AppLane, operation: rancher_apps.Operation) -> dict[str, Any]:
    """Until the App is `deployed` and the operation's helm container has ended (or it
    failed); its pod."""
    pod: dict[str, Any] = {}

    def done() -> bool:
        nonlocal pod
        pod = json.loads(kubectl(lane.management, "get", "pod", "-n", operation.namespace,
                                 operation.name, "-o", "json", check=False) or "{}")  # fmt: skip
        helm = [s for s in (pod.get("status") or {}).get("containerStatuses") or []
                if s["name"] == "helm"]  # fmt: skip
        failed = helm and (helm[0]["state"].get("terminated") or {}).get("exitCode", 0) != 0
        assert not failed, _operation_log(lane, operation)
        state = _jsonpath(lane.management, "apps.catalog.cattle.io", "herd", "-n", NAMESPACE,
                          "-o", "jsonpath={.status.summary.state}")  # fmt: skip
        # Rancher's App controller reads the release Secret helm writes, a moment before
        # the operation's helm container exits: both, for the pod's verdict below.
        ended = bool(helm and helm[0]["state"].get("terminated"))
        return state == "deployed" and ended

    try:
        eventually("the App to be deployed", done, timeout=OPERATION_WAIT)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_operation_log(lane, operation)}") from None
    return pod


def _operation_log(lane: AppLane, operation: rancher_apps.Operation) -> str:
    described = kubectl(lane.management, "describe", "pod", "-n", operation.namespace,
                        operation.name, check=False)  # fmt: skip
    logs = "".join(
        lane.node.container_log(operation.namespace, operation.name, container)
        for container in ("init-kubeconfig-volume", "proxy", "helm")
    )
    kubelet = lane.node.kubelet.describe(30) if lane.node.kubelet else ""
    return f"{described[-4000:]}\n--- operation logs ---\n{logs[-3000:]}\n{kubelet}"


def _pod_seconds(pod: dict[str, Any]) -> float:
    """From the pod's creation to its helm container's end (the kubelet's timestamps)."""
    helm = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "helm")
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    finished = datetime.fromisoformat(helm["state"]["terminated"]["finishedAt"])
    return (finished - created).total_seconds()


def _chart_version() -> str:
    for line in (CHART / "Chart.yaml").read_text().splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("install/helm/herd/Chart.yaml has no version")
