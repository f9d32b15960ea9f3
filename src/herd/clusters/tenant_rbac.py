"""The identity a tenant's helm acts as in a downstream cluster, its RBAC, and applying them.

Defence in depth for `herd.plan.tenancy`: helm deploys a non-admin Stack's releases as the tenant's
ServiceAccount (`--kube-as-user=system:serviceaccount:herd-tenants:tenant-<namespace>`, no
`--kube-as-group`: the API server adds the ServiceAccount groups), so the downstream API
server itself refuses what the namespace's grants do not allow, including what the render
check cannot see (a hook's own API calls, a lookup, a CRD's conversion...). A ServiceAccount,
unlike a made-up user, can also be impersonated through Rancher's cluster proxy.

What Herd provisions for tenant namespace N (applied server-side with field manager `herd`,
as the kubeconfig's admin identity; all but the shared namespace labelled
`herd.suse.com/tenant: N`):

- the namespace `herd-tenants` (`herd.plan.tenancy.IDENTITY_NAMESPACE`, shared by all tenants, no
  tenant is ever bound there) and in it the ServiceAccount `tenant-N`
  (`automountServiceAccountToken: false`; Herd never reads a token of it, it impersonates it);
- every chart namespace of N's Stacks that the grants allow and that is missing (Herd creates
  it, so helm runs without `--create-namespace`, which would need a cluster-wide right);
- in every allowed namespace that exists, a RoleBinding `herd-tenant-N` of the built-in
  `admin` ClusterRole to that ServiceAccount (namespace-local: no Namespaces, CRDs or
  ClusterRoles);
- only when a grant has `clusterScopedResources: true`: a ClusterRole and ClusterRoleBinding
  `herd:tenant:N:cluster-scoped` with every verb on every cluster-scoped resource the
  cluster's discovery lists (which includes ClusterRoleBindings: such a tenant is trusted
  with the cluster).

RBAC of N that the grants no longer call for (a namespace or the cluster-scoped switch
revoked, a namespace now reserved) is deleted on the next apply; namespaces are never deleted.
Upgrading from the old scheme (user `herd:tenant:N`, group `herd:tenants`): its bindings have
the same names and label, so the apply gives them the ServiceAccount as their only subject,
and the ones no longer wanted are deleted like any other.

`tenant_rbac_objects` decides (pure, table-tested in `tests/test_tenant_rbac.py`);
`discover_scope`, `list_namespaces`, `apply_tenant_rbac` and `provision` talk to the cluster
(blocking: run them in a worker thread). Callers: `herd.rollout.tenants`, per downstream
cluster and tenant, before the first helm call of a pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.errors import TransientError
from herd.kube.client import API_ERRORS, NOT_FOUND, api_error_summary, read_json
from herd.names import TENANT_LABEL
from herd.plan.tenancy import (
    IDENTITY_NAMESPACE,
    Grants,
    cluster_scoped_allowed,
    namespace_allowed,
    service_account_name,
)

FIELD_MANAGER = "herd"
ADMIN_CLUSTER_ROLE = "admin"
RBAC_API = "rbac.authorization.k8s.io/v1"
_APPLY = "application/apply-patch+yaml"

Object = dict[str, Any]


@dataclass(frozen=True)
class Scope:
    """What a cluster's discovery says is cluster-scoped.

    `kinds`: `Kind.group` keys as `herd.plan.render_check.kind_key` makes them
    (`ClusterRole.rbac.authorization.k8s.io`), for the render check; `resources`: (API group,
    plural) pairs, for RBAC rules.
    """

    kinds: frozenset[str]
    resources: frozenset[tuple[str, str]]


def binding_name(tenant: str) -> str:
    return f"herd-tenant-{tenant}"


def cluster_scoped_name(tenant: str) -> str:
    return f"herd:tenant:{tenant}:cluster-scoped"


def tenant_rbac_objects(
    grants: Grants,
    *,
    existing_namespaces: Collection[str],
    create_namespaces: Collection[str] = (),
    cluster_scoped_resources: Collection[tuple[str, str]] = (),
) -> list[Object]:
    """The objects to apply in one downstream cluster for `grants` (use `grants.on_cluster`).

    The identity first (namespace `herd-tenants`, the tenant's ServiceAccount), then the
    namespaces of `create_namespaces` that are allowed and missing, a RoleBinding per allowed
    namespace that exists or is created, and the cluster-scoped ClusterRole and its binding
    when granted. [] for unrestricted grants (admin, open).
    """
    if grants.unrestricted:
        return []
    tenant = grants.namespace
    created = sorted(
        ns
        for ns in set(create_namespaces)
        if ns not in existing_namespaces and namespace_allowed(grants, ns)
    )
    bound = sorted(
        ns for ns in set(existing_namespaces) | set(created) if namespace_allowed(grants, ns)
    )
    objects: list[Object] = identity_objects(tenant)
    objects += [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in created
    ]
    objects += [_binding(tenant, "RoleBinding", ADMIN_CLUSTER_ROLE, ns) for ns in bound]
    if cluster_scoped_allowed(grants) and cluster_scoped_resources:
        name = cluster_scoped_name(tenant)
        objects.append(
            {
                "apiVersion": RBAC_API,
                "kind": "ClusterRole",
                "metadata": {"name": name, "labels": _labels(tenant)},
                "rules": _rules(cluster_scoped_resources),
            }
        )
        objects.append(_binding(tenant, "ClusterRoleBinding", name))
    return objects


def _labels(tenant: str) -> dict[str, str]:
    return {TENANT_LABEL: tenant, "app.kubernetes.io/managed-by": "herd"}


def _binding(tenant: str, kind: str, role: str, namespace: str | None = None) -> Object:
    """The tenant's ServiceAccount bound to ClusterRole `role`: a RoleBinding in
    `namespace`, or the ClusterRoleBinding (named as the role)."""
    metadata: dict[str, Any] = {"labels": _labels(tenant)}
    if namespace is None:
        metadata["name"] = role
    else:
        metadata.update(name=binding_name(tenant), namespace=namespace)
    subject = {
        "kind": "ServiceAccount",
        "name": service_account_name(tenant),
        "namespace": IDENTITY_NAMESPACE,
    }
    return {
        "apiVersion": RBAC_API,
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [subject],
    }


def identity_objects(tenant: str) -> list[Object]:
    """The namespace `herd-tenants` and the tenant's ServiceAccount in it."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": IDENTITY_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "herd"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": service_account_name(tenant),
                "namespace": IDENTITY_NAMESPACE,
                "labels": _labels(tenant),
            },
            "automountServiceAccountToken": False,
        },
    ]


def _rules(resources: Iterable[tuple[str, str]]) -> list[Object]:
    by_group: dict[str, set[str]] = {}
    for group, plural in resources:
        by_group.setdefault(group, set()).add(plural)
    return [
        {"apiGroups": [group], "resources": sorted(plurals), "verbs": ["*"]}
        for group, plurals in sorted(by_group.items())
    ]


# ---------------------------------------------------------------------------------------
# I/O (blocking)


def discover_scope(api: client.ApiClient) -> Scope:
    """Ask the cluster's discovery which kinds and resources are cluster-scoped."""
    try:
        lists = [("", _get(api, "/api/v1"))]
        for group in _get(api, "/apis").get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("groupVersion")
            if preferred:
                lists.append((str(group.get("name", "")), _get(api, f"/apis/{preferred}")))
    except API_ERRORS as error:
        raise TransientError(
            f"cannot read the cluster's API discovery: {api_error_summary(error)}"
        ) from None
    kinds: set[str] = set()
    resources: set[tuple[str, str]] = set()
    for group, listing in lists:
        for resource in listing.get("resources") or []:
            name = str(resource.get("name", ""))
            if resource.get("namespaced") or "/" in name:
                continue
            kind = str(resource.get("kind", ""))
            kinds.add(f"{kind}.{group}" if group else kind)
            resources.add((group, name))
    return Scope(frozenset(kinds), frozenset(resources))


def list_namespaces(api: client.ApiClient) -> list[str]:
    """Names of the cluster's namespaces."""
    core = client.CoreV1Api(api)
    try:
        body = read_json(core.list_namespace)
    except API_ERRORS as error:
        raise TransientError(f"cannot list namespaces: {api_error_summary(error)}") from None
    return sorted(str(item["metadata"]["name"]) for item in body.get("items") or [])


def apply_tenant_rbac(api: client.ApiClient, tenant: str, objects: Sequence[Object]) -> None:
    """Apply `objects` server-side, then delete tenant RBAC that is no longer among them.

    Raises `TransientError` naming the object (never its content) when a call fails.
    """
    for obj in objects:
        _apply(api, obj)
    wanted = {_identity(obj) for obj in objects}
    for obj in _labelled(api, tenant):
        if _identity(obj) not in wanted:
            _delete(api, obj)


def provision(
    api: client.ApiClient, grants: Grants, create_namespaces: Collection[str] = ()
) -> Scope:
    """Discover, compute and apply a tenant's RBAC in one cluster; return the cluster's scope.

    `grants` should be `grants.on_cluster(cluster)`. Nothing is applied for unrestricted grants;
    the scope is returned either way, for the render check.
    """
    scope = discover_scope(api)
    if not grants.unrestricted:
        objects = tenant_rbac_objects(
            grants,
            existing_namespaces=list_namespaces(api),
            create_namespaces=create_namespaces,
            cluster_scoped_resources=scope.resources,
        )
        apply_tenant_rbac(api, grants.namespace, objects)
    return scope


def _get(api: client.ApiClient, path: str) -> Object:
    request = api.param_serialize(
        method="GET",
        resource_path=path,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*request, _request_timeout=30)
    data = cast(bytes, response.read())  # type: ignore[no-untyped-call]
    if not 200 <= int(response.status) <= 299:
        raise ApiException(status=int(response.status), reason=str(response.reason))
    return cast(Object, json.loads(data))


def _identity(obj: Object) -> tuple[str, str, str]:
    metadata = obj["metadata"]
    return (str(obj["kind"]), str(metadata.get("namespace", "")), str(metadata["name"]))


def _describe(obj: Object) -> str:
    kind, namespace, name = _identity(obj)
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _apply(api: client.ApiClient, obj: Object) -> None:
    kind, namespace, name = _identity(obj)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    options = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": _APPLY}
    calls: dict[str, Callable[[], Object]] = {
        "Namespace": lambda: read_json(core.patch_namespace, name, obj, **options),
        "ServiceAccount": lambda: read_json(
            core.patch_namespaced_service_account, name, namespace, obj, **options
        ),
        "RoleBinding": lambda: read_json(
            rbac.patch_namespaced_role_binding, name, namespace, obj, **options
        ),
        "ClusterRole": lambda: read_json(rbac.patch_cluster_role, name, obj, **options),
        "ClusterRoleBinding": lambda: read_json(
            rbac.patch_cluster_role_binding, name, obj, **options
        ),
    }
    try:
        calls[kind]()
    except API_ERRORS as error:
        raise TransientError(f"cannot apply {_describe(obj)}: {api_error_summary(error)}") from None


def _labelled(api: client.ApiClient, tenant: str) -> list[Object]:
    rbac = client.RbacAuthorizationV1Api(api)
    selector = f"{TENANT_LABEL}={tenant}"
    found: list[Object] = []
    try:
        for kind, call in (
            ("RoleBinding", rbac.list_role_binding_for_all_namespaces),
            ("ClusterRole", rbac.list_cluster_role),
            ("ClusterRoleBinding", rbac.list_cluster_role_binding),
        ):
            items = read_json(call, label_selector=selector).get("items") or []
            found += [{"kind": kind, "metadata": item["metadata"]} for item in items]
    except API_ERRORS as error:
        raise TransientError(f"cannot list tenant RBAC: {api_error_summary(error)}") from None
    return found


def _delete(api: client.ApiClient, obj: Object) -> None:
    kind, namespace, name = _identity(obj)
    rbac = client.RbacAuthorizationV1Api(api)
    try:
        if kind == "RoleBinding":
            read_json(rbac.delete_namespaced_role_binding, name, namespace)
        elif kind == "ClusterRole":
            read_json(rbac.delete_cluster_role, name)
        else:
            read_json(rbac.delete_cluster_role_binding, name)
    except ApiException as error:
        if error.status != NOT_FOUND:
            raise TransientError(
                f"cannot delete {_describe(obj)}: {api_error_summary(error)}"
            ) from None
    except API_ERRORS as error:
        raise TransientError(
            f"cannot delete {_describe(obj)}: {api_error_summary(error)}"
        ) from None
