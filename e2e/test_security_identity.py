"""The tenant identity downstream is a ServiceAccount: real RBAC, real helm, a Rancher-proxy
stand-in, and the real controller.

- Upgrading from the user-based scheme (`herd:tenant:N`, group `herd:tenants`) leaves nothing
  of it: objects of the old shape, created as the old Herd did, get the ServiceAccount as
  subject or are deleted (a namespace that is no longer granted, or now reserved).
- Each tenant has its own ServiceAccount, which can do nothing in another tenant's
  namespaces, nor in `herd-tenants` (no token minting for another tenant) nor in the add-on
  namespaces, whatever the grant's globs say.
- Through `e2e.testbed.rancher_proxy` (a stand-in for Rancher's `/k8s/clusters/<id>`, see
  its docstring for what it leaves unproven): the old identity is refused with 403, the
  ServiceAccount passes; the controller deploys a tenant Stack with `observability: enabled`
  (grant with `addons: true`) through a Rancher-shaped kubeconfig Secret pointing at the
  proxy, and a tenant without `addons` is refused naming the field.

Runs on `downstream[2]` only. Fixture chart: `e2e/charts-tenancy/tenant-probe`.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client

from e2e.testbed import rancher
from e2e.testbed.chartrepo import ChartRepo, run_helm
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.herd_controller import (
    Controller,
    kubectl,
    prepare_management,
    service_account_kubeconfig,
)
from e2e.testbed.rancher_proxy import RancherProxy
from herd.api.grants import parse_grant
from herd.clusters.kube import api_client_from_kubeconfig
from herd.clusters.tenant_rbac import TENANT_LABEL, provision
from herd.tenancy import Grants, grants_for

CHARTS = Path(__file__).resolve().parent / "charts-tenancy"
ADDON_NAMESPACES = ("suse-observability", "cattle-neuvector-system")
CLUSTER_ID = "c-m-idproxy1"
RANCHER_NS = "fleet-identity"
WAIT = 180.0
T = TypeVar("T")


def account(tenant: str) -> str:
    return f"system:serviceaccount:herd-tenants:tenant-{tenant}"


def eventually(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def bed(downstream: list[BedCluster]) -> BedCluster:
    return downstream[2]


@pytest.fixture(scope="module")
def api(bed: BedCluster) -> Iterator[client.ApiClient]:
    api = api_client_from_kubeconfig(bed.kubeconfig)
    try:
        yield api
    finally:
        api.close()


def grant_body(tenant: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": tenant},
        "spec": {
            "namespaces": [tenant],
            "clusters": {"clusterIds": [CLUSTER_ID]},
            "targetNamespaces": [f"{tenant}-*"],
            **spec,
        },
    }


def grants_of(tenant: str, **spec: Any) -> Grants:
    return grants_for(
        tenant,
        [parse_grant(grant_body(tenant, **spec))],
        admin_namespace="herd-system",
        addon_namespaces=ADDON_NAMESPACES,
    )


def bed_kubectl(bed: BedCluster, *args: str, stdin: str | None = None) -> str:
    return kubectl(bed.kubeconfig, *args, stdin=stdin, check=True)


def can(bed: BedCluster, user: str, *question: str) -> bool:
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(bed.kubeconfig), "auth", "can-i", *question, "--as", user],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def settles_to(bed: BedCluster, user: str, answer: bool, *question: str) -> bool:
    """RBAC changes reach the authorizer within seconds: wait for `answer`, bounded."""
    deadline = time.monotonic() + 60
    while can(bed, user, *question) is not answer:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def bindings_naming(bed: BedCluster, subject: str) -> list[str]:
    found = json.loads(
        bed_kubectl(bed, "get", "rolebindings,clusterrolebindings", "-A", "-o", "json")
    )
    return [
        f"{item['kind']} {item['metadata'].get('namespace', '')}/{item['metadata']['name']}"
        for item in found["items"]
        if any(s.get("name") == subject for s in item.get("subjects") or [])
    ]


def remove_tenant_rbac(bed: BedCluster, *tenants: str) -> None:
    for tenant in tenants:
        kubectl(
            bed.kubeconfig, "delete", "rolebindings,clusterroles,clusterrolebindings", "-A",
            "-l", f"{TENANT_LABEL}={tenant}", check=False,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------
# Upgrade from the user-based scheme


def old_scheme(tenant: str, namespaces: list[str]) -> list[dict[str, Any]]:
    """What Herd applied before tenants were ServiceAccounts (same names, label, manager)."""
    labels = {TENANT_LABEL: tenant, "app.kubernetes.io/managed-by": "herd"}
    user = {
        "kind": "User",
        "apiGroup": "rbac.authorization.k8s.io",
        "name": f"herd:tenant:{tenant}",
    }
    scoped = f"herd:tenant:{tenant}:cluster-scoped"
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"herd-tenant-{tenant}", "namespace": ns, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "admin",
            },
            "subjects": [user],
        }
        for ns in namespaces
    ]
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": scoped, "labels": labels},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["*"]}],
        }
    )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": scoped, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": scoped,
            },
            "subjects": [user],
        }
    )
    return objects


def test_the_old_user_scheme_is_replaced_not_left_behind(
    bed: BedCluster, api: client.ApiClient
) -> None:
    tenant = "id-old"
    kept, revoked = f"{tenant}-apps", f"{tenant}-gone"
    old_user = f"herd:tenant:{tenant}"
    for namespace in (kept, revoked, "suse-observability"):
        kubectl(bed.kubeconfig, "create", "namespace", namespace, check=False)
    # The old Herd bound the agent's namespace too: its grants had to list it for the
    # dashboards. The old objects are applied as the old Herd applied them.
    bed_kubectl(
        bed, "apply", "--server-side", "--field-manager=herd", "--force-conflicts", "-f", "-",
        stdin=yaml.safe_dump_all(old_scheme(tenant, [kept, revoked, "suse-observability"])),
    )  # fmt: skip
    assert settles_to(bed, old_user, True, "create", "configmaps", "-n", kept)
    try:
        grants = grants_of(
            tenant, targetNamespaces=[kept, "suse-observability"], clusterScopedResources=True
        )
        provision(api, grants, create_namespaces=[kept])

        assert bindings_naming(bed, old_user) == []
        assert sorted(bindings_naming(bed, f"tenant-{tenant}")) == [
            f"ClusterRoleBinding /herd:tenant:{tenant}:cluster-scoped",
            f"RoleBinding {kept}/herd-tenant-{tenant}",
        ]
        for namespace in (kept, revoked, "suse-observability"):
            assert settles_to(bed, old_user, False, "create", "configmaps", "-n", namespace)
        assert settles_to(bed, account(tenant), True, "create", "configmaps", "-n", kept)
        assert can(bed, account(tenant), "create", "clusterroles")  # still granted, now the SA's
        assert not can(bed, account(tenant), "create", "configmaps", "-n", revoked)
        assert not can(bed, account(tenant), "get", "secrets", "-n", "suse-observability")
    finally:
        remove_tenant_rbac(bed, tenant)


# ---------------------------------------------------------------------------------------
# One ServiceAccount per tenant, and nothing in the reserved namespaces


def test_tenants_are_apart_and_out_of_the_reserved_namespaces(
    bed: BedCluster, api: client.ApiClient
) -> None:
    a, b, wide = "id-a", "id-b", "id-w"
    try:
        provision(api, grants_of(a), create_namespaces=[f"{a}-apps"])
        provision(api, grants_of(b), create_namespaces=[f"{b}-apps"])
        # Globs that match everything, add-ons granted: still never the reserved namespaces.
        provision(
            api, grants_of(wide, targetNamespaces=["*", "herd-*"], addons=True), [f"{wide}-apps"]
        )
        assert settles_to(bed, account(a), True, "create", "deployments", "-n", f"{a}-apps")
        assert settles_to(bed, account(b), True, "create", "deployments", "-n", f"{b}-apps")
        assert settles_to(bed, account(wide), True, "create", "deployments", "-n", f"{a}-apps")
        assert account(a) != account(b)
        for verb in ("get", "list", "create", "delete"):
            assert not can(bed, account(a), verb, "secrets", "-n", f"{b}-apps")
            assert not can(bed, account(b), verb, "configmaps", "-n", f"{a}-apps")
        for tenant in (a, b, wide):
            who = account(tenant)
            # No token for another tenant's ServiceAccount, no impersonating it.
            assert not can(bed, who, "create", "serviceaccounts/token", "-n", "herd-tenants")
            assert not can(bed, who, "impersonate", "serviceaccounts", "-n", "herd-tenants")
            assert not can(bed, who, "create", "pods", "-n", "herd-tenants")
            assert not can(bed, who, "get", "secrets", "-n", "suse-observability")
            assert not can(bed, who, "create", "configmaps", "-n", "cattle-neuvector-system")
        bound = bed_kubectl(
            bed, "get", "rolebindings", "-A", "-l", f"{TENANT_LABEL}={wide}",
            "-o", "jsonpath={.items[*].metadata.namespace}",
        ).split()  # fmt: skip
        assert f"{a}-apps" in bound and "kube-system" in bound  # "*" is "*" ...
        assert not {"herd-tenants", *ADDON_NAMESPACES} & set(bound)  # ... but these never
    finally:
        remove_tenant_rbac(bed, a, b, wide)


# ---------------------------------------------------------------------------------------
# Through the Rancher-proxy stand-in


@pytest.fixture(scope="module")
def proxy(bed: BedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RancherProxy]:
    # The Rancher user is the cluster's owner downstream, as Rancher's RBAC sync makes it.
    owner = bed_kubectl(
        bed, "create", "clusterrolebinding", "rancher-standin-u-herd",
        "--clusterrole=cluster-admin", "--user=u-herd", "--dry-run=client", "-o", "yaml",
    )  # fmt: skip
    bed_kubectl(bed, "apply", "-f", "-", stdin=owner)
    running = RancherProxy(tmp_path_factory.mktemp("rancher-proxy"), {CLUSTER_ID: bed})
    running.start()
    try:
        yield running
    finally:
        running.stop()
        kubectl(
            bed.kubeconfig, "delete", "clusterrolebinding", "rancher-standin-u-herd", check=False
        )


def through(
    proxy: RancherProxy, path: str, token: str | None, **headers: str | list[str]
) -> tuple[int, dict[str, Any]]:
    """GET `path` of the cluster through the proxy; (HTTP status, the JSON body)."""
    request = urllib.request.Request(f"{proxy.url}/k8s/clusters/{CLUSTER_ID}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in headers.items():
        for one in [value] if isinstance(value, str) else value:
            request.add_header(name.replace("_", "-"), one)
    context = ssl.create_default_context(cafile=str(proxy.pki.ca.cert))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_the_proxy_refuses_the_old_identity_and_forwards_the_service_account(
    bed: BedCluster, api: client.ApiClient, proxy: RancherProxy
) -> None:
    tenant = "id-p"
    token = proxy.issue_token()
    path = f"/api/v1/namespaces/{tenant}-apps/configmaps"
    try:
        provision(api, grants_of(tenant), create_namespaces=[f"{tenant}-apps"])
        assert settles_to(bed, account(tenant), True, "list", "configmaps", "-n", f"{tenant}-apps")

        assert through(proxy, path, None)[0] == 401
        assert through(proxy, path, "token-zzzzz:" + "x" * 52)[0] == 401
        # The identity Herd used before: refused by the proxy, never forwarded.
        status, body = through(
            proxy, path, token, Impersonate_User=f"herd:tenant:{tenant}",
            Impersonate_Group="herd:tenants",
        )  # fmt: skip
        assert (status, body["reason"]) == (403, "Forbidden"), body
        status, body = through(proxy, path, token, Impersonate_User=f"herd:tenant:{tenant}")
        assert status == 403 and "not a Rancher user" in body["message"], body
        # The ServiceAccount: a token is minted downstream and the request goes as it.
        status, body = through(proxy, path, token, Impersonate_User=account(tenant))
        assert status == 200 and body["kind"] == "ConfigMapList", body
        assert (CLUSTER_ID, f"herd-tenants/tenant-{tenant}") in proxy.minted
        # ... with the ServiceAccount's rights only: the downstream API server says no.
        status, body = through(
            proxy, "/api/v1/namespaces/kube-system/secrets", token,
            Impersonate_User=account(tenant),
        )  # fmt: skip
        assert status == 403 and account(tenant) in body["message"], body
        status, body = through(
            proxy, path, token, Impersonate_User=account(tenant),
            Impersonate_Group="system:masters",
        )  # fmt: skip
        assert status == 403, body
        # Without impersonation: the Rancher user itself.
        assert through(proxy, path, token)[0] == 200
    finally:
        remove_tenant_rbac(bed, tenant)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    workdir = tmp_path_factory.mktemp("identity-charts")
    served = workdir / "repo"
    served.mkdir()
    run_helm(["package", str(CHARTS / "tenant-probe"), "--destination", str(served)], workdir)
    run_helm(["repo", "index", str(served)], workdir)
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


def settled(management: BedCluster, body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]

    def probe() -> dict[str, Any] | None:
        out = kubectl(
            management.kubeconfig, "get", "stack", meta["name"], "-n", meta["namespace"],
            "-o", "json",
        )  # fmt: skip
        found = json.loads(out)
        current = found.get("status") or {}
        done = current.get("phase") not in (None, "Pending", "Deploying")
        fresh = current.get("observedGeneration") == found["metadata"]["generation"]
        return current if done and fresh else None

    return eventually(f"Stack {meta['namespace']}/{meta['name']} to settle", probe)


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

    def deployed() -> dict[str, Any] | None:
        found = (
            json.loads(
                kubectl(
                    management.kubeconfig, "get", "stack", "observed", "-n", "id-obs", "-o", "json"
                )
            ).get("status")
            or {}
        )
        rows = rows_of(found)
        return found if rows and {r["status"] for r in rows} == {"Deployed"} else None

    found = eventually("the Stack to deploy once add-ons are granted", deployed)
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
