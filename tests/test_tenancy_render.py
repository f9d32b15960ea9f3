"""Tenancy's render check: which objects of a rendered manifest a tenant's grants forbid
(cluster-scoped kinds, other namespaces, hooks, a chart's own CRDs), the message naming
them, and kind keys. The grants themselves are `tests/test_tenancy.py`.
"""

from __future__ import annotations

import pytest

from herd.plan.render_check import ForbiddenObject, describe_forbidden, forbidden_objects, kind_key
from herd.plan.tenancy import grants_for
from tests.test_tenancy import ADMIN, ALL, B, a, cluster

DISCOVERY = {
    "Namespace",
    "Node",
    "ClusterRole.rbac.authorization.k8s.io",
    "ClusterRoleBinding.rbac.authorization.k8s.io",
    "CustomResourceDefinition.apiextensions.k8s.io",
}

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.fixtures.herd.test}
spec:
  group: fixtures.herd.test
  scope: Cluster
  names: {kind: Widget, plural: widgets}
"""
NAMESPACED_CRD = (
    CRD.replace("widgets", "gadgets").replace("Widget", "Gadget").replace("Cluster", "Namespaced")
)
CLUSTER_ROLE = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
)
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n"
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"
ELSEWHERE = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sneaky, namespace: kube-system}\n"
SIBLING = "apiVersion: v1\nkind: Secret\nmetadata: {name: ok, namespace: team-b-cache}\n"
HOOK = (
    "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  namespace: default\n"
    "  annotations: {helm.sh/hook: pre-install}\n"
)
WIDGET = "apiVersion: fixtures.herd.test/v1\nkind: Widget\nmetadata: {name: w1}\n"
GADGET = "apiVersion: fixtures.herd.test/v1\nkind: Gadget\nmetadata: {name: g1}\n"
ROLE_LIST = (
    "apiVersion: v1\nkind: List\nitems:\n"
    "- apiVersion: rbac.authorization.k8s.io/v1\n"
    "  kind: ClusterRoleBinding\n"
    "  metadata: {name: crb}\n"
)


def manifest(*docs: str) -> str:
    return "---\n" + "\n---\n".join(docs) + "\n---\n"


C = ForbiddenObject


@pytest.mark.parametrize(
    ("namespace", "docs", "release_namespace", "expected"),
    [
        ("team-b", [CONFIG_MAP], "team-b", []),  # no namespace = release namespace
        ("team-b", [CONFIG_MAP, SIBLING], "team-b", []),  # another allowed namespace
        ("team-a", [CONFIG_MAP], "kube-system", [C("ConfigMap", "settings", "kube-system")]),
        ("team-a", [ELSEWHERE, CONFIG_MAP], "team-a", [C("ConfigMap", "sneaky", "kube-system")]),
        ("team-a", [HOOK], "team-a", [C("Job", "migrate", "default")]),  # hooks count
        (
            "team-a",
            [CRD],
            "team-a",
            [C("CustomResourceDefinition", "widgets.fixtures.herd.test", None)],
        ),
        ("team-a", [CLUSTER_ROLE], "team-a", [C("ClusterRole", "reader", None)]),
        ("team-a", [NAMESPACE], "team-a", [C("Namespace", "team-b", None)]),
        ("team-a", [ROLE_LIST], "team-a", [C("ClusterRoleBinding", "crb", None)]),
        (  # the chart's own CRD says Widget is cluster-scoped, Gadget namespaced
            "team-a",
            [CRD, NAMESPACED_CRD, WIDGET, GADGET],
            "team-a",
            [
                C("CustomResourceDefinition", "gadgets.fixtures.herd.test", None),
                C("CustomResourceDefinition", "widgets.fixtures.herd.test", None),
                C("Widget", "w1", None),
            ],
        ),
        # team-b may create cluster-scoped objects, but not leave its namespaces
        ("team-b", [CRD, CLUSTER_ROLE, NAMESPACE, WIDGET, CONFIG_MAP], "team-b", []),
        ("team-b", [CLUSTER_ROLE, ELSEWHERE], "team-b", [C("ConfigMap", "sneaky", "kube-system")]),
        (ADMIN, [CRD, CLUSTER_ROLE, ELSEWHERE], "kube-system", []),  # admin Stack
        ("team-a", ["", "# only a comment", CONFIG_MAP, CONFIG_MAP], "team-a", []),
    ],
)
def test_forbidden_objects(
    namespace: str, docs: list[str], release_namespace: str, expected: list[ForbiddenObject]
) -> None:
    grants = grants_for(namespace, ALL, admin_namespace=ADMIN)
    assert forbidden_objects(grants, manifest(*docs), release_namespace, DISCOVERY) == expected


def test_the_render_check_follows_the_cluster() -> None:
    docs = manifest("apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: prod-a}\n")
    assert forbidden_objects(a().on_cluster(cluster("c-m-prod1")), docs, "prod-a", DISCOVERY) == []
    staging = a().on_cluster(cluster("c-1", env="staging"))
    assert forbidden_objects(staging, docs, "prod-a", DISCOVERY) == [C("Service", "api", "prod-a")]


def test_forbidden_message_names_kind_name_and_grants() -> None:
    objects = [C("ClusterRole", "reader", None), C("ConfigMap", "sneaky", "kube-system")]
    assert describe_forbidden(B, objects) == (
        "the chart would create objects not granted (ClusterGrant team-b of namespace team-b): "
        "ClusterRole reader (cluster-scoped), ConfigMap kube-system/sneaky (namespace kube-system)"
    )


@pytest.mark.parametrize(
    ("api_version", "kind", "key"),
    [
        ("v1", "Namespace", "Namespace"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", "ClusterRole.rbac.authorization.k8s.io"),
        ("fixtures.herd.test/v1alpha1", "Widget", "Widget.fixtures.herd.test"),
    ],
)
def test_kind_key(api_version: str, kind: str, key: str) -> None:
    assert kind_key(api_version, kind) == key
