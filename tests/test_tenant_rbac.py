"""The RBAC objects a tenant gets downstream, decided from its grants (no cluster involved)."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api.grants import parse_grant
from herd.clusters.tenant_rbac import tenant_rbac_objects
from herd.plan.tenancy import Grants, grants_for

ADMIN = "herd-system"
SCOPED = [("", "namespaces"), ("rbac.authorization.k8s.io", "clusterroles"), ("", "nodes")]


def grants(namespace: str = "team-a", **spec: Any) -> Grants:
    grant = parse_grant(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "ClusterGrant",
            "metadata": {"name": "g"},
            "spec": {
                "namespaces": ["team-a"],
                "clusters": {"clusterIds": ["c-1"]},
                "targetNamespaces": ["team-a", "team-a-*"],
                **spec,
            },
        }
    )
    return grants_for(namespace, [grant], admin_namespace=ADMIN)


IDENTITY = [
    ("Namespace", "", "herd-tenants"),
    ("ServiceAccount", "herd-tenants", "tenant-team-a"),
]
SUBJECT = {"kind": "ServiceAccount", "name": "tenant-team-a", "namespace": "herd-tenants"}


def summary(objects: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The objects after the identity, which every bounded tenant gets first."""
    found = [
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects
    ]
    assert found[:2] == IDENTITY
    return found[2:]


@pytest.mark.parametrize(
    ("existing", "create", "expected"),
    [
        (
            ["default", "kube-system", "team-a", "team-a-cache", "team-ab"],
            [],
            [
                ("RoleBinding", "team-a", "herd-tenant-team-a"),
                ("RoleBinding", "team-a-cache", "herd-tenant-team-a"),
            ],
        ),
        (  # a missing chart namespace is created and bound; a forbidden one is not created
            ["default", "team-a"],
            ["team-a-web", "team-a", "kube-public", "other"],
            [
                ("Namespace", "", "team-a-web"),
                ("RoleBinding", "team-a", "herd-tenant-team-a"),
                ("RoleBinding", "team-a-web", "herd-tenant-team-a"),
            ],
        ),
        (["default", "kube-system"], [], []),
    ],
)
def test_namespaced_rbac(
    existing: list[str], create: list[str], expected: list[tuple[str, str, str]]
) -> None:
    objects = tenant_rbac_objects(
        grants(),
        existing_namespaces=existing,
        create_namespaces=create,
        cluster_scoped_resources=SCOPED,
    )
    assert summary(objects) == expected


def test_the_binding_gives_admin_to_the_tenant_service_account_only() -> None:
    _, account, binding = tenant_rbac_objects(grants(), existing_namespaces=["team-a"])
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "admin",
    }
    assert binding["subjects"] == [SUBJECT]
    assert binding["metadata"]["labels"]["herd.suse.com/tenant"] == "team-a"
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["labels"]["herd.suse.com/tenant"] == "team-a"


def test_each_tenant_has_its_own_service_account() -> None:
    b = grants("team-b", namespaces=["team-b"], targetNamespaces=["team-b"])
    _, account, binding = tenant_rbac_objects(b, existing_namespaces=["team-b"])
    assert account["metadata"]["name"] == "tenant-team-b"
    assert binding["subjects"] == [{**SUBJECT, "name": "tenant-team-b"}]
    assert binding["metadata"]["name"] == "herd-tenant-team-b"


@pytest.mark.parametrize("targets", [["*"], ["herd-*", "team-a"], ["herd-tenants", "team-a"]])
def test_no_glob_binds_a_tenant_into_the_identity_namespace(targets: list[str]) -> None:
    wide = grants(targetNamespaces=targets)
    objects = tenant_rbac_objects(
        wide,
        existing_namespaces=["herd-tenants", "team-a", "suse-observability"],
        create_namespaces=["herd-tenants"],
    )
    bound = {o["metadata"]["namespace"] for o in objects if o["kind"] == "RoleBinding"}
    assert "herd-tenants" not in bound and "team-a" in bound


def test_cluster_scoped_rules_only_when_granted() -> None:
    objects = tenant_rbac_objects(
        grants(clusterScopedResources=True),
        existing_namespaces=["team-a"],
        cluster_scoped_resources=SCOPED,
    )
    assert summary(objects) == [
        ("RoleBinding", "team-a", "herd-tenant-team-a"),
        ("ClusterRole", "", "herd:tenant:team-a:cluster-scoped"),
        ("ClusterRoleBinding", "", "herd:tenant:team-a:cluster-scoped"),
    ]
    objects = objects[2:]
    assert objects[1]["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces", "nodes"], "verbs": ["*"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["*"]},
    ]
    assert objects[2]["roleRef"]["name"] == "herd:tenant:team-a:cluster-scoped"
    assert objects[2]["subjects"] == [SUBJECT]


def test_admin_stacks_keep_the_kubeconfig_identity() -> None:
    admin = grants(ADMIN)
    assert tenant_rbac_objects(admin, existing_namespaces=["kube-system"]) == []
