"""The real-Rancher lane (marker `rancher_real`, `make e2e-rancher`): Herd against Rancher itself.

A bed of its own (management + downstream-1, whose apiserver writes an audit log), the
Rancher server on the management control plane, and downstream-1 imported the way a user
imports a cluster, its agent a process that opens Rancher's tunnel
(`e2e.testbed.rancher_real`). Herd then reads only what Rancher wrote: the provisioning
Clusters in fleet-default and fleet-local (Herd's default namespaces), the management
Clusters' conditions, and the `<name>-kubeconfig` Secrets that point at Rancher's
`/k8s/clusters/<id>` proxy with the token of Rancher's system user. Every helm call goes
through that proxy: to downstream-1 through the agent's tunnel, to `local` (the management
cluster itself) in-process.

Skips when the Rancher binaries are absent (`rancher_real.find_binaries` names what is
missing). The figures (Rancher's start time and RSS, the agent's RSS, a helm operation
through the proxy against direct) are printed and written to `figures.json` in the lane's
temporary directory (and to `$HERD_RANCHER_FIGURES` when set).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import binaries, processes, rancher_real
from e2e.testbed.chartrepo import helm_binary
from e2e.testbed.components import Shape
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.controlplane import TestBed
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.herd_controller import (
    LOOPBACK_EGRESS,
    Controller,
    prepare_management,
    service_account_kubeconfig,
    settled_stack,
)
from herd.clusters.sources import RancherSource
from herd.kube.client import api_client_from_kubeconfig

pytestmark = pytest.mark.rancher_real

LANE = "herd-lane"  # the label both target clusters carry
IMPORTED = "real-1"
TENANT = "real-tenant"
ADMIN_NS = "herd-system"
WAIT = 300.0


@dataclass
class Lane:
    bed: TestBed
    rancher: rancher_real.RancherServer
    imported: rancher_real.ImportedCluster
    workdir: Path
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def management(self) -> BedCluster:
        return self.bed.clusters["management"]

    @property
    def downstream(self) -> BedCluster:
        return self.bed.clusters["downstream-1"]


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    found, why = rancher_real.find_binaries()
    if found is None:
        pytest.skip(why)
    workdir = tmp_path_factory.mktemp("rancher-real")
    bed = TestBed.start(
        ["management", "downstream-1"], workdir / "bed", binaries=binaries.ensure(),
        shapes={"downstream-1": Shape(audit=True)},
    )  # fmt: skip
    running: list[processes.ManagedProcess] = []
    figures: dict[str, Any] = {"rancher_tag": rancher_real.RANCHER_TAG}
    try:
        server = rancher_real.RancherServer(found.server, bed.clusters["management"], workdir)
        running.append(server.process)
        server.start()
        figures["rancher_start_seconds"] = round(server.start_seconds, 1)
        figures["rancher_restarts_asked"] = server.restarts
        began = time.monotonic()
        imported = rancher_real.import_cluster(
            server, found.agent, IMPORTED, bed.clusters["downstream-1"], {LANE: "real"}
        )
        running.append(imported.agent)
        _wait_connected(Lane(bed, server, imported, workdir))
        figures["import_to_connected_seconds"] = round(time.monotonic() - began, 1)
        # Rancher's own local cluster (fleet-local) is the second target.
        kubectl(bed.clusters["management"], "label", "clusters.provisioning.cattle.io", "local",
                "-n", "fleet-local", f"{LANE}=real", "--overwrite")  # fmt: skip
        figures["rancher_rss_mib"] = round(server.rss_mib)
        figures["agent_rss_mib"] = round(imported.rss_mib)
        yield Lane(bed, server, imported, workdir, figures)
    finally:
        for process in reversed(running):
            process.stop()
        processes.kill_recorded(workdir)
        rancher_real.remove_mount_point()
        bed.stop()
        rancher_real.report_figures(figures, workdir, "HERD_RANCHER_FIGURES", "real Rancher lane")


def _wait_connected(lane: Lane) -> None:
    def ready() -> bool:
        connected = rancher_real.agent_connected(lane.management, lane.imported.cluster_id)
        status = kubectl(lane.management, "get", "clusters.provisioning.cattle.io", IMPORTED,
                         "-n", "fleet-default", "-o", "jsonpath={.status.ready}/"
                         "{.status.clientSecretName}", check=False)  # fmt: skip
        return connected and status.strip() == f"true/{IMPORTED}-kubeconfig"

    try:
        eventually("the imported cluster's agent to connect", ready, timeout=WAIT)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{lane.imported.agent.describe(40)}") from None


@pytest.fixture(scope="module")
def controller(lane: Lane) -> Iterator[Controller]:
    mgmt = lane.management.kubeconfig
    prepare_management(mgmt, [])
    kubectl(mgmt, "create", "namespace", TENANT, check=False)
    grant = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": TENANT},
        "spec": {
            "namespaces": [TENANT],
            "clusters": {"clusterIds": [lane.imported.cluster_id]},
            "targetNamespaces": [f"{TENANT}-*"],
        },
    }
    kubectl(mgmt, "apply", "-f", "-", stdin=yaml.safe_dump(grant))
    user = rancher_real.kubeconfig_user(lane.management, IMPORTED)
    rancher_real.allow_service_account_impersonation(lane.management, user)
    directory = lane.workdir / "controller"
    running = Controller(
        "rancher-real", directory, service_account_kubeconfig(mgmt, directory / "sa.yaml"),
        ADMIN_NS, also_watch=(TENANT,),
        # No HERD_RANCHER_NAMESPACES: the default (fleet-default, fleet-local) is tested.
        settings={"HERD_RESYNC_SECONDS": "30", "HERD_RETRY_SECONDS": "3",
                  "HERD_FLEET_SECONDS": "1", "HERD_EGRESS_ALLOW_CIDRS": LOOPBACK_EGRESS},
    )  # fmt: skip
    running.start()
    try:
        yield running
    finally:
        for namespace in (TENANT, ADMIN_NS):
            kubectl(mgmt, "delete", "stacks", "--all", "-n", namespace, "--timeout=120s",
                    check=False, timeout=180)  # fmt: skip
        running.stop()


def _stack(namespace: str, name: str, repo: str, **spec: Any) -> dict[str, Any]:
    chart_ns = spec.pop("chart_namespace", f"{name}-apps")
    message = spec.pop("message", "through Rancher")
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "charts": [
                {"name": "app", "chart": "app", "repo": repo, "version": "0.1.0",
                 "namespace": chart_ns, "values": {"inline": {"message": message}}}
            ],
            **spec,
        },
    }  # fmt: skip


def _apply_and_settle(lane: Lane, body: dict[str, Any]) -> dict[str, Any]:
    kubectl(lane.management, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    meta = body["metadata"]
    return settled_stack(lane.management.kubeconfig, meta["namespace"], meta["name"], WAIT)


def _message_on(cluster: BedCluster, namespace: str) -> str:
    out = kubectl(cluster, "get", "configmaps", "-n", namespace, "-o", "json", check=False)
    for item in json.loads(out or '{"items": []}')["items"]:
        if "message" in (item.get("data") or {}):
            return str(item["data"]["message"])
    return ""


async def test_rancher_writes_kubeconfigs_herd_lists_by_default(lane: Lane) -> None:
    """The Secrets are Rancher's: its proxy URL, its CA, a token; Herd's default namespaces
    list the imported cluster and `local`, both ready."""
    document = rancher_real.proxy_kubeconfig(lane.management, IMPORTED)
    cluster = document["clusters"][0]["cluster"]
    assert cluster["server"] == f"{lane.rancher.url}/k8s/clusters/{lane.imported.cluster_id}"
    assert cluster.get("certificate-authority-data")
    assert set(document["users"][0]["user"]) == {"token"}

    # Rancher's management Cluster turns Ready a little after Connected: Herd follows it.
    api = api_client_from_kubeconfig(lane.management.kubeconfig)
    seen: list[set[tuple[str, str, bool, str, str]]] = [set()]
    wanted = {
        (lane.imported.cluster_id, IMPORTED, True, "fleet-default", ""),
        ("local", "local", True, "fleet-local", ""),
    }
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not wanted <= seen[0]:
            listed = await RancherSource(api).list_clusters()
            seen[0] = {(c.id, c.name, c.ready, c.kubeconfig.namespace, c.not_ready)
                       for c in listed}  # fmt: skip
            await asyncio.sleep(2)
    finally:
        api.close()  # type: ignore[no-untyped-call]
    assert wanted <= seen[0], seen[0]


def test_admin_stack_rolls_out_in_stages_through_the_proxy(
    lane: Lane, controller: Controller, chart_repo_url: str
) -> None:
    """Canary first (the imported cluster, through the tunnel), then `local`; helm's
    watcher wait (Helm 4) follows the Deployment through Rancher's proxy."""
    stages = [
        {"name": "canary", "clusterIds": [lane.imported.cluster_id], "maxConcurrent": 1},
        {"name": "rest", "selector": {"matchLabels": {LANE: "real"}}},
    ]
    body = _stack(
        ADMIN_NS, "admin", chart_repo_url, targets={"selector": {"matchLabels": {LANE: "real"}}},
        rollout={"stages": stages},
    )  # fmt: skip
    status = _apply_and_settle(lane, body)

    assert status["phase"] == "Deployed", json.dumps(status)[:3000]
    rows = {row["clusterId"]: row["status"] for row in status.get("deployments") or []}
    assert rows == {lane.imported.cluster_id: "Deployed", "local": "Deployed"}, rows
    # (A finished rollout leaves no `status.rollout`: the order is read from helm's calls.)
    assert _message_on(lane.downstream, "admin-apps") == "through Rancher"
    upgrades = [c for c in controller.helm_calls() if c.mutating]
    first = {_cluster_of(c.args, lane): c.at for c in reversed(upgrades)}
    assert first[lane.imported.cluster_id] < first["local"], upgrades  # canary first


def _cluster_of(args: tuple[str, ...], lane: Lane) -> str:
    """Which cluster a helm call went to: Herd's kubeconfig files are named by cluster id."""
    kubeconfig = next((a for a in args if a.endswith(".kubeconfig")), "").split("=")[-1]
    if Path(kubeconfig).name.startswith(lane.imported.cluster_id):
        return lane.imported.cluster_id
    return "local" if Path(kubeconfig).name.startswith("local") else kubeconfig


def test_tenant_stack_runs_as_its_service_account_through_the_proxy(
    lane: Lane, controller: Controller, chart_repo_url: str
) -> None:
    """Herd impersonates the tenant's ServiceAccount at Rancher's proxy; the downstream
    audit log shows the writes as that ServiceAccount."""
    body = _stack(
        TENANT, "tenant", chart_repo_url, chart_namespace=f"{TENANT}-apps",
        targets={"clusterIds": [lane.imported.cluster_id]},
    )  # fmt: skip
    status = _apply_and_settle(lane, body)

    # `local` is visible but not granted: reported (Degraded), never touched.
    rows = {row["clusterId"]: row["status"] for row in status.get("deployments") or []}
    assert rows == {lane.imported.cluster_id: "Deployed"}, json.dumps(status)[:3000]
    skipped = {row["clusterId"]: row["reason"] for row in status.get("skippedClusters") or []}
    assert set(skipped) <= {"local"} and all("not granted" in r for r in skipped.values())
    assert _message_on(lane.downstream, f"{TENANT}-apps") == "through Rancher"
    tenant = f"system:serviceaccount:herd-tenants:tenant-{TENANT}"
    writes = _writes(lane.downstream, f"{TENANT}-apps")
    # The chart's objects and helm's release Secret: written as the tenant, nobody else.
    # (Herd's tenant RoleBinding there is written with the kubeconfig's identity, which
    # Rancher's proxy turns into its agent's ServiceAccount downstream.)
    chart = {(resource, who, via) for resource, who, via in writes if resource in CHART_KINDS}
    assert {resource for resource, _, _ in chart} >= {"configmaps", "secrets"}, writes
    assert {who for _, who, _ in chart} == {tenant}, writes
    # How Rancher passed the identity on: a token of the ServiceAccount itself (minted by
    # Rancher), or its agent's identity impersonating it.
    lane.figures["tenant_writes_as"] = sorted(
        {"ServiceAccount token" if via == "" else f"impersonated by {via}" for _, _, via in chart}
    )
    lane.figures["writers_in_tenant_namespace"] = sorted({f"{r}: {w}" for r, w, _ in writes})


CHART_KINDS = ("configmaps", "deployments", "services", "secrets")
WRITES = ("create", "patch", "update")


def _writes(cluster: BedCluster, namespace: str) -> set[tuple[str, str, str]]:
    """Who wrote what in `namespace`, per the apiserver's audit log: (resource, the
    effective user, the authenticated user when it impersonated the effective one, else "")."""
    found: set[tuple[str, str, str]] = set()
    for line in cluster.audit_log.read_text().splitlines():
        event = json.loads(line)
        target = event.get("objectRef") or {}
        # Helm 4 applies server-side: a chart's objects are created by a PATCH.
        if event.get("verb") not in WRITES or target.get("namespace") != namespace:
            continue
        if target.get("name") == "kube-root-ca.crt":  # Kubernetes puts it in every namespace
            continue
        if target.get("subresource"):  # status written by controllers, not the chart's write
            continue
        if (event.get("responseStatus") or {}).get("code", 0) >= 300:
            continue
        user = str((event.get("user") or {}).get("username"))
        impersonated = (event.get("impersonatedUser") or {}).get("username")
        resource = str(target.get("resource"))
        found.add((resource, str(impersonated), user) if impersonated else (resource, user, ""))
    return found


def test_a_stopped_agent_is_a_clear_row_then_the_stack_recovers(
    lane: Lane, controller: Controller, chart_repo_url: str
) -> None:
    """Agent stopped: Rancher marks the cluster disconnected, Herd skips it with Rancher's
    reason and makes no helm call to it; agent restarted: the Stack converges again."""
    targets = {"clusterIds": [lane.imported.cluster_id]}
    body = _stack(ADMIN_NS, "outage", chart_repo_url, targets=targets, message="before")
    assert _apply_and_settle(lane, body)["phase"] == "Deployed"

    lane.imported.agent.stop()
    eventually(
        "Rancher to see the agent gone",
        lambda: not rancher_real.agent_connected(lane.management, lane.imported.cluster_id),
        timeout=120,
    )
    stopped_at = time.time()
    body = _stack(ADMIN_NS, "outage", chart_repo_url, targets=targets, message="during")
    status = _apply_and_settle(lane, body)
    skipped = {row["clusterId"]: row["reason"] for row in status.get("skippedClusters") or []}
    reason = skipped.get(lane.imported.cluster_id, "")
    assert "is not ready" in reason and "Connected is False" in reason, json.dumps(status)
    time.sleep(10)  # several fleet passes and retries while disconnected
    calls = [c for c in controller.helm_calls(stopped_at)
             if _cluster_of(c.args, lane) == lane.imported.cluster_id]  # fmt: skip
    assert not calls, calls
    assert not _helm_children(controller), "helm processes left while the cluster is away"

    lane.imported.agent.start()
    _wait_connected(lane)
    eventually(
        "the Stack to converge after the agent is back",
        lambda: _message_on(lane.downstream, "outage-apps") == "during",
        timeout=WAIT,
    )
    kubeconfigs = list((controller.workdir).rglob("*.kubeconfig"))
    assert len(kubeconfigs) <= 2, kubeconfigs  # one file per cluster, none left over


def _helm_children(controller: Controller) -> list[str]:
    assert controller.process is not None
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(controller.process.pid)],
                         capture_output=True, text=True, check=False).stdout  # fmt: skip
    return [line for line in out.splitlines() if "helm" in line]


def test_one_helm_operation_through_the_proxy_against_direct(
    lane: Lane, chart_repo_url: str
) -> None:
    """The same `helm upgrade --install --wait`, once direct and once through Rancher's
    proxy and tunnel: the ratio goes into the figures (one run, not a benchmark)."""
    proxied = lane.workdir / "proxied.kubeconfig"
    proxied.write_text(yaml.safe_dump(rancher_real.proxy_kubeconfig(lane.management, IMPORTED)))
    proxied.chmod(0o600)
    seconds = {}
    for way, kubeconfig in (("direct", lane.downstream.kubeconfig), ("proxy", proxied)):
        began = time.monotonic()
        subprocess.run(
            [str(helm_binary()), "upgrade", "--install", f"ratio-{way}", "app", "--repo",
             chart_repo_url, "--version", "0.1.0", "-n", f"ratio-{way}", "--create-namespace",
             "--wait", "--timeout", "3m", "--kubeconfig", str(kubeconfig)],
            check=True, capture_output=True, timeout=240,
        )  # fmt: skip
        seconds[way] = time.monotonic() - began
    lane.figures["helm_install_direct_seconds"] = round(seconds["direct"], 2)
    lane.figures["helm_install_proxy_seconds"] = round(seconds["proxy"], 2)
    lane.figures["helm_proxy_direct_ratio"] = round(seconds["proxy"] / seconds["direct"], 2)
    assert _message_on(lane.downstream, "ratio-proxy") == "hello from herd"
