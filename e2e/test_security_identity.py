"""The tenant identity downstream is a ServiceAccount: real RBAC on a real API server, and a
Rancher-proxy stand-in in front of it.

- Upgrading from the user-based scheme (`herd:tenant:N`, group `herd:tenants`) leaves nothing
  of it: objects of the old shape, created as the old Herd did, get the ServiceAccount as
  subject or are deleted (a namespace that is no longer granted, or now reserved).
- Each tenant has its own ServiceAccount, which can do nothing in another tenant's
  namespaces, nor in `herd-tenants` (no token minting for another tenant) nor in the add-on
  namespaces, whatever the grant's globs say.
- Through `e2e.testbed.rancher_proxy` (a stand-in for Rancher's `/k8s/clusters/<id>`, see
  its docstring for what it leaves unproven): the old identity is refused with 403, the
  ServiceAccount passes with its own rights only. The controller through the proxy:
  `e2e/test_security_identity_rancher.py`.

Runs on `downstream[2]` only. Fixture chart: `e2e/charts-tenancy/tenant-probe`.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.rancher_proxy import RancherProxy
from e2e.testbed.tenant_identity import (
    ADDON_NAMESPACES,
    CLUSTER_ID,
    account,
    bed_kubectl,
    bindings_naming,
    can,
    grants_of,
    rancher_proxy,
    remove_tenant_rbac,
    settles_to,
)
from herd.clusters.tenant_rbac import provision
from herd.kube.client import api_client_from_kubeconfig
from herd.names import TENANT_LABEL


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
    with rancher_proxy(bed, tmp_path_factory.mktemp("rancher-proxy")) as running:
        yield running


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
