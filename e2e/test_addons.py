"""Security and observability add-ons on the test bed: real API servers, helm, charts.

The catalog points at the local chart repository, whose `core` and
`suse-observability-agent` are stand-ins of the real NeuVector and agent charts. The
three downstream clusters play a small fleet: two labelled `env=prod, workload=ai-ml`
with the ids the README's examples name (`c-m-gpu01`, `c-m-gpu02`), one not. Each
cluster's *name* differs from its id, so the agent's per-cluster identity is visible.

NeuVector cannot run here. Its REST API is reached for real through each cluster's API
server service proxy: to no endpoint at all (the `core` stand-in with no controller
replica: Unavailable, cleanly), and to the NeuVector stand-in, behind a selector-less
Service whose Endpoints name a pod that "runs" at the stand-in's address. The API server
proxies only to addresses of existing pods and never to loopback, so that pod sits on a
Node no kubelet (nor kwok) manages, its status written by the test, and the stand-in
runs in a network namespace the test makes (`e2e.testbed.netns`), reached over a veth
pair: test traffic goes to loopback or to that namespace, nowhere else.

Every test deletes its Stack: the add-on releases have fixed names, so two Stacks with
add-ons on one cluster would contend for them. The catalog's own ConfigMap and Secret
are `e2e/test_addons_catalog.py`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import netns, proxied
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.neuvector_child import StandInProcess, served
from e2e.testbed.neuvector_standin import CannedImage
from e2e.testbed.passes import status_of
from herd.addons.catalog import AddonCatalog
from herd.addons.insights import INSIGHTS
from herd.addons.probe import AddonProbe
from herd.api import StackStatus, parse_stack
from herd.api.v1 import Stack
from herd.engine.engine import Engine
from herd.engine.protocols import StackResult
from herd.helm.environment import HelmEnvironment, find_helm
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.results import State
from herd.status.addons import OBSERVABILITY_CONFIGURED, SECURITY_SCANNED
from herd.status.facts import AGENT, NEUVECTOR

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROD = {"env": "prod", "workload": "ai-ml"}
FLEET: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("c-m-gpu01", "gpu-east", PROD),
    ("c-m-gpu02", "gpu-west", PROD),
    ("c-m-cpu01", "cpu", {}),
)
NV_PASSWORD = "nv-" + uuid.uuid4().hex
NV_IMAGE = "registry.example.com/neuvector/controller:5.4.4"
APP_OLD = "registry.example.com/herd/app:0.1.0"
APP_NEW = "registry.example.com/herd/app:0.2.0"
STANDIN_SERVICE = "herd-nv-standin"
STANDIN_PORT = 10443  # NeuVector's own; the namespace is fresh, so it is free


class FleetInventory:
    """The downstream clusters as `herd.engine.engine.Inventory` lists them (ids ≠ names)."""

    def __init__(self, downstream: list[BedCluster]) -> None:
        self.clusters_by_id = {
            cluster_id: Cluster(
                id=cluster_id,
                name=name,
                labels=labels,
                ready=True,
                source="file",
                kubeconfig=KubeconfigRef.file(bed.kubeconfig),
            )
            for (cluster_id, name, labels), bed in zip(FLEET, downstream, strict=True)
        }
        self.beds = {c: bed for c, bed in zip(self.clusters_by_id, downstream, strict=True)}

    async def clusters(self) -> list[Cluster]:
        return list(self.clusters_by_id.values())

    async def kubeconfig(self, cluster: Cluster) -> Path:
        assert cluster.kubeconfig.path is not None
        return cluster.kubeconfig.path


@dataclass
class Addons:
    catalog: AddonCatalog
    api_key: str


@pytest.fixture(scope="module")
def fleet(downstream: list[BedCluster]) -> FleetInventory:
    return FleetInventory(downstream)


@pytest.fixture
async def env() -> AsyncIterator[HelmEnvironment]:
    helm = HelmEnvironment()
    yield helm
    helm.close()


def addons(chart_repo_url: str, **config: Any) -> Addons:
    api_key = "sts-" + uuid.uuid4().hex  # unique, so any leak of it is found
    secret = {
        "stackstate.url": "https://observability.example.com/receiver/stsAgent",
        "stackstate.apiKey": api_key,
        "neuvector.password": NV_PASSWORD,
    }
    data = {
        "neuvector.repo": chart_repo_url,
        "observability.repo": chart_repo_url,
        "neuvector.timeout": "2m",
        "observability.timeout": "2m",
        **config,
    }
    return Addons(AddonCatalog.from_config(data, secret), api_key)


def example(name: str, repo: str) -> Stack:
    """An owner's README example with its charts taken from the local repository."""
    body = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    for chart in body["spec"]["charts"]:
        chart["repo"] = repo
    return parse_stack(body)


def helm_values(bed: BedCluster, namespace: str, release: str) -> dict[str, Any]:
    out = subprocess.run(
        [find_helm(), "--kubeconfig", str(bed.kubeconfig), "get", "values", release,
         "-n", namespace, "-o", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    values: dict[str, Any] = json.loads(out)
    return values


def assert_addons_first(result: StackResult, addon_names: tuple[str, ...]) -> None:
    """On every target: the add-ons are wave 0 and finished before any user chart began."""
    assert result.plan is not None
    assert result.plan.waves[0] == addon_names
    for target in result.targets:
        rows = [r for r in result.releases if r.key.cluster == target.id]
        first = [r for r in rows if r.chart in addon_names]
        rest = [r for r in rows if r.chart not in addon_names]
        assert {r.chart for r in first} == set(addon_names), target.id
        assert rest, target.id
        last_addon = max(r.finished for r in first if r.finished)
        assert all(r.started and r.started >= last_addon for r in rest), target.id


def assert_no_leak(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


def condition(status: StackStatus, kind: str) -> tuple[str, str, str]:
    found = next(c for c in status.conditions if c.type == kind)
    return found.status, found.reason, found.message


EXAMPLE_ADDONS = {
    "secure-ai-stack": (NEUVECTOR,),
    "observable-ai-stack": (AGENT,),
    "production-ai-platform": (NEUVECTOR, AGENT),
}


def assert_addon_values(
    fleet: FleetInventory, result: StackResult, addon_names: tuple[str, ...], config: Addons
) -> None:
    """The values helm received: the agent's per-cluster identity, NeuVector's password."""
    if AGENT in addon_names:
        for target in result.targets:
            values = helm_values(
                fleet.beds[target.id], "suse-observability", "suse-observability-agent"
            )
            assert values["stackstate"]["cluster"]["name"] == target.name
            assert values["stackstate"]["apiKey"] == config.api_key  # it reaches helm
    if NEUVECTOR in addon_names:
        values = helm_values(fleet.beds["c-m-gpu01"], "cattle-neuvector-system", "neuvector")
        assert values["bootstrapPassword"] == NV_PASSWORD
        assert values["controller"] == {"replicas": 0}


def assert_addon_sections(status: StackStatus, addon_names: tuple[str, ...]) -> None:
    """Security (NeuVector down: Unavailable) and observability (agents ready), or neither."""
    if NEUVECTOR in addon_names:
        assert status.security is not None
        assert status.security.neu_vector_enabled
        assert status.security.scan_status == "Unavailable"
        state, reason, message = condition(status, SECURITY_SCANNED)
        assert (state, reason) == ("False", "NeuVectorUnavailable")
        assert "HTTP 503" in message and "no endpoints available" in message, message
        assert {r.security_scan for r in status.deployments} == {"Pending"}
    else:
        assert status.security is None
    if AGENT in addon_names:
        assert status.observability is not None
        assert status.observability.model_dump() == {
            "suse_observability_enabled": True,
            "agents_deployed": 2,
            "agents_total": 2,
            "metrics_collected": True,
            "dashboards_available": 4,  # Herd's two dashboards on each cluster
            "alerts_configured": 0,  # no PrometheusRule CRD on these clusters
        }
        assert condition(status, OBSERVABILITY_CONFIGURED)[:2] == ("True", "AgentsReady")
        assert {r.observability_metrics for r in status.deployments} == {"Active"}
    else:
        assert status.observability is None


@pytest.mark.parametrize("name", list(EXAMPLE_ADDONS))
async def test_readme_example_deploys_addons_first_with_per_cluster_identity(
    name: str,
    fleet: FleetInventory,
    env: HelmEnvironment,
    chart_repo_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # No controller replica: NeuVector's API Service has no endpoint, as when it is down.
    config = addons(chart_repo_url, **{"neuvector.values": "controller:\n  replicas: 0\n"})
    engine = Engine(fleet, env, addons=config.catalog)
    probe = AddonProbe(config.catalog, env)
    stack = example(name, chart_repo_url)
    try:
        result = await engine.apply(stack)
        assert {r.state for r in result.releases} == {State.DEPLOYED}, result.releases
        assert sorted(c.id for c in result.targets) == ["c-m-gpu01", "c-m-gpu02"]
        assert not [r for r in result.releases if r.key.cluster == "c-m-cpu01"]
        assert_addons_first(result, EXAMPLE_ADDONS[name])

        assert_addon_values(fleet, result, EXAMPLE_ADDONS[name], config)
        status = await status_of(result, probe, fleet)
        assert_addon_sections(status, EXAMPLE_ADDONS[name])

        assert_no_leak(
            config.api_key,
            repr(result),
            status.model_dump_json(),
            stack.model_dump_json(),
            caplog.text,
        )
        assert_no_leak(NV_PASSWORD, status.model_dump_json(), caplog.text)
    finally:
        gone = await engine.delete(stack.namespace, stack.name)
        assert {r.state for r in gone.releases} <= {State.UNINSTALLED}


# -- scans through the real service proxy, answered by the NeuVector stand-in --------------


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInProcess]:
    images = [
        CannedImage(APP_OLD, critical=1, high=2, medium=3),
        CannedImage(APP_NEW, medium=1),
        CannedImage(NV_IMAGE),
    ]
    with contextlib.ExitStack() as stack:
        host = netns.host_or_skip(stack, "herd-nv", "the NeuVector stand-in")
        yield stack.enter_context(
            served(
                host.popen,
                host=host.address,
                port=STANDIN_PORT,
                password=NV_PASSWORD,
                images=images,
                workdir=tmp_path_factory.mktemp("neuvector-standin"),
            )
        )


def expose_standin(bed: BedCluster, namespace: str, standin: StandInProcess) -> None:
    """Service `STANDIN_SERVICE` in `namespace`, its one endpoint the stand-in's address."""
    proxied.expose(
        bed.kubeconfig,
        namespace,
        STANDIN_SERVICE,
        address=standin.host,
        port=standin.port,
        port_name="controller-api",
        service_port=10443,
    )


def remove_standin(bed: BedCluster, namespace: str) -> None:
    proxied.remove(bed.kubeconfig, namespace, STANDIN_SERVICE)


def scanned_stack(chart_repo_url: str) -> Stack:
    """Both add-ons and two charts of the app (0.1.0 with findings, 0.2.0 clean) on PROD."""
    app = {"chart": "app", "repo": chart_repo_url, "namespace": "shop", "wait": True}
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": "scanned", "namespace": "default"},
            "spec": {
                "security": "enabled",
                "observability": "enabled",
                "targets": {"selector": {"matchLabels": PROD}},
                "charts": [
                    {"name": "web", "version": "0.1.0", **app},
                    {"name": "api", "version": "0.2.0", "dependsOn": ["web"], **app},
                ],
            },
        }
    )


def assert_first_scans(status: StackStatus, standin: StandInProcess) -> None:
    """The stand-in's scans in the status and rows (the agent's image not scanned yet)."""
    assert status.security is not None
    assert status.security.model_dump() == {
        "neu_vector_enabled": True,
        "scan_status": "Pending",  # the agent's image is not in the stand-in's scans
        "vulnerabilities": 7,
        "critical_issues": 1,
    }
    scans = {(r.cluster_id, r.chart_name): r.security_scan for r in status.deployments}
    assert scans == {
        (cluster, chart): verdict
        for cluster in ("c-m-gpu01", "c-m-gpu02")
        for chart, verdict in (
            ("web", "Failed"),
            ("api", "Passed"),
            (NEUVECTOR, "Passed"),
            (AGENT, "Pending"),
            (INSIGHTS, "Passed"),  # Herd's dashboards: ConfigMaps, no image
        )
    }
    state, reason, message = condition(status, SECURITY_SCANNED)
    assert (state, reason) == ("False", "ScanPending"), message
    # Every call went through the proxy with a live session, and every session ended.
    requests = standin.requests
    assert [r.path for r in requests].count("/v1/scan/image") == 2
    assert all(r.authorized for r in requests if r.path.startswith("/v1/scan/"))
    assert standin.open_sessions == 0


async def test_scans_through_the_service_proxy_reach_status_and_rows(
    fleet: FleetInventory,
    env: HelmEnvironment,
    chart_repo_url: str,
    standin: StandInProcess,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = addons(chart_repo_url, **{"neuvector.apiService": f"https:{STANDIN_SERVICE}:10443"})
    engine = Engine(fleet, env, addons=config.catalog)
    probe = AddonProbe(config.catalog, env)
    stack = scanned_stack(chart_repo_url)
    try:
        result = await engine.apply(stack)
        assert {r.state for r in result.releases} == {State.DEPLOYED}, result.releases
        assert_addons_first(result, (NEUVECTOR, AGENT))
        for target in result.targets:
            expose_standin(fleet.beds[target.id], "cattle-neuvector-system", standin)

        status = await status_of(result, probe, fleet)
        assert_first_scans(status, standin)

        # Once NeuVector has scanned the agent's image too, the scan is complete.
        standin.add_image(
            CannedImage("registry.example.com/stackstate/stackstate-k8s-cluster-agent:3.0.0")
        )
        status = await status_of(result, probe, fleet)
        assert status.security is not None and status.security.scan_status == "Completed"
        assert condition(status, SECURITY_SCANNED)[:2] == ("True", "CriticalVulnerabilitiesFound")
        assert condition(status, OBSERVABILITY_CONFIGURED)[:2] == ("True", "AgentsReady")

        assert_no_leak(config.api_key, repr(result), status.model_dump_json(), caplog.text)
        assert_no_leak(NV_PASSWORD, status.model_dump_json(), caplog.text)
    finally:
        for cluster_id in ("c-m-gpu01", "c-m-gpu02"):
            remove_standin(fleet.beds[cluster_id], "cattle-neuvector-system")
        await engine.delete(stack.namespace, stack.name)
