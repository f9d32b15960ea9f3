"""A tenant Stack through a Rancher-shaped kubeconfig Secret that points at the Rancher-proxy
stand-in (`e2e.testbed.rancher_proxy`; its docstring says what it leaves unproven), run by the
real controller with install/'s RBAC.

The tenant's grant first lacks `addons`: `observability: enabled` is refused naming the
field. Then the grant gains `addons: true` (its `targetNamespaces` still do not name the
agent's namespace) and the Stack deploys: the agent and Herd's dashboards with the
kubeconfig's identity, the tenant's chart as its ServiceAccount, for which the proxy minted a
token downstream; the tenant has no right in the agent's namespace.

Runs on `downstream[2]` only. Fixture chart: `e2e/charts-tenancy/tenant-probe`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import rancher
from e2e.testbed.chartrepo import ChartRepo, package_charts
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import get_stack, kubectl
from e2e.testbed.herd_controller import (
    Controller,
    prepare_management,
    service_account_kubeconfig,
)
from e2e.testbed.rancher_proxy import RancherProxy
from e2e.testbed.tenant_identity import (
    CLUSTER_ID,
    account,
    bed_kubectl,
    can,
    eventually,
    grant_body,
    rancher_proxy,
    settled,
)

CHARTS = Path(__file__).resolve().parent / "charts-tenancy"
RANCHER_NS = "fleet-identity"


@pytest.fixture(scope="module")
def bed(downstream: list[BedCluster]) -> BedCluster:
    return downstream[2]


@pytest.fixture(scope="module")
def proxy(bed: BedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RancherProxy]:
    with rancher_proxy(bed, tmp_path_factory.mktemp("rancher-proxy")) as running:
        yield running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    served = package_charts([CHARTS / "tenant-probe"], tmp_path_factory.mktemp("identity-charts"))
    with ChartRepo.serve(served) as running:
        yield running


OBS_GRANT = grant_body("id-obs")
ADDONS_SECRET = {"stackstate.url": "https://observability.example.com/receiver/stsAgent"}


@pytest.fixture(scope="module")
def controller(
    management: BedCluster,
    bed: BedCluster,
    proxy: RancherProxy,
    chart_repo_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Controller]:
    mgmt = management.kubeconfig
    prepare_management(mgmt, [RANCHER_NS])
    directory = tmp_path_factory.mktemp("identity-controller")
    # The Rancher-shaped kubeconfig Secret points at the proxy, with a Rancher token.
    via_proxy = directory / "via-proxy.yaml"
    via_proxy.write_text(proxy.kubeconfig(CLUSTER_ID, proxy.issue_token()))
    via_proxy.chmod(0o600)
    rancher.register_clusters(
        mgmt, [rancher.RancherCluster("id-proxied", CLUSTER_ID, via_proxy, {"id": "proxied"})],
        namespace=RANCHER_NS,
    )  # fmt: skip
    addons = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "herd-addons", "namespace": "herd-system"},
        "data": {"observability.repo": chart_repo_url, "observability.timeout": "2m"},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "herd-addons", "namespace": "herd-system"},
        "stringData": {**ADDONS_SECRET, "stackstate.apiKey": "sts-identity-test"},
    }
    # No add-ons granted yet: the test grants them after the first refusal.
    kubectl(mgmt, "apply", "-f", "-", stdin=yaml.safe_dump_all([addons, secret, OBS_GRANT]))
    kubectl(mgmt, "create", "namespace", "id-obs", check=False)
    running = Controller(
        "identity",
        directory / "controller",
        service_account_kubeconfig(mgmt, directory / "sa.yaml"),
        "id-obs",
        settings={
            "HERD_RANCHER_NAMESPACES": RANCHER_NS,
            "HERD_RESYNC_SECONDS": "20",
            "HERD_RETRY_SECONDS": "3",
            "HERD_FLEET_SECONDS": "1",
        },
    )
    running.start()
    try:
        yield running
    finally:
        kubectl(mgmt, "delete", "stacks", "--all", "-n", "id-obs", "--timeout=120s",
                check=False, timeout=180)  # fmt: skip
        running.stop()
        kubectl(mgmt, "delete", "clustergrants", "id-obs", check=False)
        kubectl(mgmt, "delete", "configmap,secret", "herd-addons", "-n", "herd-system", check=False)
        rancher.unregister(mgmt, "id-proxied", namespace=RANCHER_NS)


def stack(namespace: str, repo: str) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": "observed", "namespace": namespace},
        "spec": {
            "targets": {"clusterIds": [CLUSTER_ID]},
            "observability": "enabled",
            "charts": [
                {
                    "name": "probe",
                    "chart": "tenant-probe",
                    "repo": repo,
                    "version": "0.1.0",
                    "namespace": f"{namespace}-apps",
                    "releaseName": "observed",
                }
            ],
        },
    }


def rows_of(found: dict[str, Any]) -> list[dict[str, Any]]:
    return list(found.get("deployments") or [])


def test_observability_is_refused_without_addons_then_deploys_through_the_proxy(
    controller: Controller,
    management: BedCluster,
    bed: BedCluster,
    proxy: RancherProxy,
    repo: ChartRepo,
) -> None:
    body = stack("id-obs", repo.url)
    kubectl(management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    refused = settled(management, body)
    assert refused["phase"] == "Failed", refused
    assert "spec.observability" in refused["message"], refused
    assert "addons: true" in refused["message"], refused

    # The grant gains `addons: true` (its targetNamespaces still do not name the agent's
    # namespace): the grant change wakes the Stack, which now deploys.
    granted = grant_body("id-obs", addons=True)
    kubectl(management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(granted))

    seen: list[dict[str, Any]] = [{}]

    def deployed() -> dict[str, Any] | None:
        found = get_stack(management, "id-obs", "observed").get("status") or {}
        seen[0] = found
        rows = rows_of(found)
        return found if rows and {r["status"] for r in rows} == {"Deployed"} else None

    try:
        found = eventually("the Stack to deploy once add-ons are granted", deployed)
    except AssertionError as error:  # say what the Stack said instead
        raise AssertionError(f"{error}; its status then: {json.dumps(seen[0])[:3000]}") from None
    charts = {r["chartName"]: r for r in rows_of(found)}
    assert {"probe", "suse-observability-agent", "herd-insights"} <= set(charts), charts
    assert charts["herd-insights"]["namespace"] == "suse-observability"

    # The tenant's release went downstream as its ServiceAccount, through the proxy ...
    assert (CLUSTER_ID, "herd-tenants/tenant-id-obs") in proxy.minted
    as_tenant = [f for f in proxy.log if f.impersonated == account("id-obs")]
    assert any(f.method in ("POST", "PATCH", "PUT") and f.status < 300 for f in as_tenant)
    refusals = [f for f in proxy.log if f.status in (401, 403) and f.caller]
    assert not [f for f in refusals if f.impersonated.startswith("herd:")], refusals
    # ... and has no right in the add-on namespace, where Herd put the dashboards itself.
    assert not can(bed, account("id-obs"), "create", "configmaps", "-n", "suse-observability")
    dashboards = bed_kubectl(
        bed, "get", "configmaps", "-n", "suse-observability", "-l", "grafana_dashboard=1",
        "-o", "name",
    )  # fmt: skip
    assert dashboards.strip(), "Herd's dashboards are not in suse-observability"
