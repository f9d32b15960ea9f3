"""The RBAC objects a tenant gets downstream, decided from its grants (no cluster involved)."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api.grants import parse_grant
from herd.clusters.tenant_rbac import tenant_rbac_objects
from herd.tenancy import Grants, grants_for

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


def summary(objects: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects]


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


def test_the_binding_gives_admin_to_the_tenant_user_only() -> None:
    (binding,) = tenant_rbac_objects(grants(), existing_namespaces=["team-a"])
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "admin",
    }
    assert binding["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "herd:tenant:team-a"}
    ]
    assert binding["metadata"]["labels"]["herd.suse.com/tenant"] == "team-a"


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
    assert objects[1]["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces", "nodes"], "verbs": ["*"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["*"]},
    ]
    assert objects[2]["roleRef"]["name"] == "herd:tenant:team-a:cluster-scoped"
    assert objects[2]["subjects"][0]["name"] == "herd:tenant:team-a"


def test_admin_stacks_keep_the_kubeconfig_identity() -> None:
    admin = grants(ADMIN)
    assert tenant_rbac_objects(admin, existing_namespaces=["kube-system"]) == []
