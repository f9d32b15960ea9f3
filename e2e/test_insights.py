"""Herd's dashboards and alerts on the test bed, counted from what the clusters hold.

Two downstream clusters: the first serves the Prometheus operator's PrometheusRule CRD
(installed by the test, as kube-prometheus-stack would), the second does not. A Stack with
`observability: enabled` gets the agent (the local repository's stand-in) and, beside it,
its own `herd-insights` release: two Grafana dashboard ConfigMaps on each cluster, and a
PrometheusRule with two alerts only where the CRD exists. Disabling observability, and
deleting the Stack, remove them (the shared agent stays, as add-ons do).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.test_gpu import Inventory
from e2e.testbed import rancher
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import open_crd
from e2e.testbed.passes import status_of
from herd.addons.catalog import AddonCatalog
from herd.addons.insights import INSIGHTS
from herd.addons.probe import AddonProbe
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment
from herd.plan.results import State
from herd.status.facts import AGENT

AGENT_NAMESPACE = "suse-observability"
CRD = "prometheusrules.monitoring.coreos.com"


@pytest.fixture(scope="module")
def prometheus_crd(downstream: list[BedCluster]) -> Iterator[BedCluster]:
    """The PrometheusRule CRD on the first downstream cluster; removed after."""
    bed = downstream[0]
    names = {
        "kind": "PrometheusRule",
        "listKind": "PrometheusRuleList",
        "plural": "prometheusrules",
        "singular": "prometheusrule",
        "shortNames": ["promrule"],
    }
    body = open_crd("monitoring.coreos.com", names)
    with rancher.api_client(bed.kubeconfig) as api:
        extensions = client.ApiextensionsV1Api(api)
        with contextlib.suppress(ApiException):
            extensions.create_custom_resource_definition(body)
        for _ in range(100):  # established: helm's discovery then lists the kind
            crd = extensions.read_custom_resource_definition(CRD)
            conditions = crd.status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                break
            time.sleep(0.1)
    yield bed
    with rancher.api_client(bed.kubeconfig) as api, contextlib.suppress(ApiException):
        client.ApiextensionsV1Api(api).delete_custom_resource_definition(CRD)


@pytest.fixture
async def env() -> AsyncIterator[HelmEnvironment]:
    helm = HelmEnvironment()
    yield helm
    helm.close()


def observable(repo: str, name: str, observability: str) -> Stack:
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "observability": observability,
                "targets": {"clusterIds": ["c-m-gpu01", "c-m-cpu01"]},
                "charts": [{"name": "app", "repo": repo, "version": "0.1.0", "namespace": "shop"}],
            },
        }
    )


def herd_objects(bed: BedCluster, release: str) -> tuple[list[str], list[str]]:
    """Names of the dashboard ConfigMaps and PrometheusRules of `release` on `bed`."""
    selector = f"app.kubernetes.io/instance={release}"
    with rancher.api_client(bed.kubeconfig) as api:
        maps = client.CoreV1Api(api).list_namespaced_config_map(
            AGENT_NAMESPACE, label_selector=f"{selector},grafana_dashboard=1"
        )
        try:
            rules = client.CustomObjectsApi(api).list_namespaced_custom_object(
                "monitoring.coreos.com", "v1", AGENT_NAMESPACE, "prometheusrules",
                label_selector=selector,
            )  # fmt: skip
        except ApiException as error:
            assert error.status == 404
            rules = {"items": []}
    return (
        sorted(m.metadata.name for m in maps.items),
        sorted(r["metadata"]["name"] for r in rules["items"]),
    )


async def test_dashboards_and_alerts_counted_and_removed(
    downstream: list[BedCluster],
    prometheus_crd: BedCluster,
    env: HelmEnvironment,
    chart_repo_url: str,
) -> None:
    inventory = Inventory({"c-m-gpu01": prometheus_crd, "c-m-cpu01": downstream[1]})
    secret = {
        "stackstate.url": "https://observability.example.com/receiver/stsAgent",
        "stackstate.apiKey": "sts-" + uuid.uuid4().hex,
    }
    config = {"observability.repo": chart_repo_url, "observability.timeout": "2m"}
    catalog = AddonCatalog.from_config(config, secret)
    engine = Engine(inventory, env, addons=catalog)
    probe = AddonProbe(catalog, env)
    name = "insights-" + uuid.uuid4().hex[:6]
    enabled = observable(chart_repo_url, name, "enabled")
    try:
        result = await engine.apply(enabled)
        states = {(r.chart, r.key.cluster): r.state for r in result.releases}
        assert set(states.values()) == {State.DEPLOYED}, result.releases
        insights = next(r for r in result.releases if r.chart == INSIGHTS)
        release, namespace = insights.key.name, insights.key.namespace
        assert namespace == AGENT_NAMESPACE
        status = await status_of(result, probe, inventory)
        assert status.observability is not None
        assert status.observability.dashboards_available == 4  # 2 per cluster
        assert status.observability.alerts_configured == 2  # only where the CRD is
        with_crd = herd_objects(prometheus_crd, release)
        without = herd_objects(downstream[1], release)
        assert with_crd == (
            [f"{release}-gpu-per-pod", f"{release}-release-health"],
            [release],
        )
        assert without == (with_crd[0], [])
        print(status.observability.model_dump_json(by_alias=True, indent=2))

        # Disabled: the Stack's herd-insights release goes; the shared agent stays.
        result = await engine.apply(observable(chart_repo_url, name, "disabled"))
        assert {r.chart for r in result.releases if r.state is State.UNINSTALLED} == {INSIGHTS}
        assert herd_objects(prometheus_crd, release) == ([], [])
        assert herd_objects(downstream[1], release) == ([], [])
        assert not [r for r in result.releases if r.chart == AGENT]

        # Enabled again, then the Stack deleted: nothing of Herd's is left.
        result = await engine.apply(enabled)
        assert herd_objects(prometheus_crd, release)[1] == [release]
    finally:
        gone = await engine.delete(enabled.namespace, enabled.name)
        assert {r.state for r in gone.releases} <= {State.UNINSTALLED}
    assert herd_objects(prometheus_crd, release) == ([], [])
    assert herd_objects(downstream[1], release) == ([], [])
