"""Tenancy decisions: which grants apply, clusters, namespaces, switches and spec checks.

The render check (objects a chart would create outside its grants) is
`tests/test_tenancy_render.py`; both share the grants defined here.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import ChartSpec, parse_spec
from herd.api.grants import ClusterGrant, parse_grant
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.render_check import ForbiddenObject, forbidden_objects
from herd.plan.tenancy import (
    IDENTITY_NAMESPACE,
    RECORDS_NAMESPACE,
    Grants,
    Identity,
    Mode,
    addon_namespace_problems,
    addon_release,
    addons_allowed,
    affected_namespaces,
    cluster_granted,
    cluster_scoped_allowed,
    granted_clusters,
    grants_for,
    helm_identity,
    namespace_allowed,
    parse_grants,
    spec_problems,
)

ADMIN = "herd-system"


def grant(name: str, *namespaces: str, **spec: Any) -> ClusterGrant:
    body = {
        "clusters": {"selector": {"matchLabels": {"env": "staging"}}},
        "targetNamespaces": [namespaces[0] if namespaces else name, f"{name}-*"],
        **spec,
        "namespaces": list(namespaces or [name]),
    }
    return parse_grant(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "ClusterGrant",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def cluster(cluster_id: str, name: str = "", **labels: str) -> Cluster:
    return Cluster(
        id=cluster_id,
        name=name or f"{cluster_id}-name",
        labels=labels,
        ready=True,
        source="rancher",
        kubeconfig=KubeconfigRef.secret("fleet-default", f"{cluster_id}-kubeconfig", "value"),
    )


TEAM_A = grant("team-a")
TEAM_A_PROD = grant(
    "team-a-prod",
    "team-a",
    clusters={"clusterIds": ["c-m-prod1", "edge"]},
    targetNamespaces=["prod-a"],
    addons=True,
)
TEAM_B = grant("team-b", clusterScopedResources=True)
ALL = [TEAM_B, TEAM_A_PROD, TEAM_A]


def a() -> Grants:
    return grants_for("team-a", ALL, admin_namespace=ADMIN)


# ---------------------------------------------------------------------------------------
# Which grants apply


def test_grants_for_a_namespace_add_up_in_name_order() -> None:
    assert a().names == ["team-a", "team-a-prod"]
    assert not a().unrestricted
    assert a().describe() == "ClusterGrants team-a, team-a-prod of namespace team-a"


def test_a_namespace_nobody_granted_gets_nothing() -> None:
    none = grants_for("team-c", ALL, admin_namespace=ADMIN)
    assert none.grants == ()
    assert none.describe() == "no ClusterGrant names namespace team-c"
    assert not cluster_granted(none, cluster("c-1", env="staging"))
    assert not namespace_allowed(none, "team-c")


@pytest.mark.parametrize(
    ("namespace", "mode"),
    [(ADMIN, Mode.GRANTS), ("team-c", Mode.OPEN), (ADMIN, Mode.OPEN)],
)
def test_admin_namespace_and_open_mode_are_unrestricted(namespace: str, mode: Mode) -> None:
    grants = grants_for(namespace, [], admin_namespace=ADMIN, mode=mode)
    assert grants.unrestricted
    assert cluster_granted(grants, cluster("anything"))
    assert namespace_allowed(grants, "kube-system")
    assert addons_allowed(grants) and cluster_scoped_allowed(grants)
    assert helm_identity(grants) is None


def test_tenants_act_as_their_own_service_account() -> None:
    # No group: the API server adds system:serviceaccounts(:herd-tenants) itself, and
    # Rancher's proxy would refuse an impersonated group.
    assert helm_identity(a()) == Identity("system:serviceaccount:herd-tenants:tenant-team-a")
    assert helm_identity(a()) != helm_identity(B)


# ---------------------------------------------------------------------------------------
# Reserved namespaces: the tenants' identities, the add-ons

ADDON_NAMESPACES = ("suse-observability", "cattle-neuvector-system")


def everything(addons: bool) -> Grants:
    """A grant whose globs match every namespace."""
    wide = grant("wide", "team-w", targetNamespaces=["*", "herd-*"], addons=addons)
    return grants_for("team-w", [wide], admin_namespace=ADMIN, addon_namespaces=ADDON_NAMESPACES)


@pytest.mark.parametrize("addons", [False, True])
@pytest.mark.parametrize("namespace", [IDENTITY_NAMESPACE, RECORDS_NAMESPACE, *ADDON_NAMESPACES])
def test_reserved_namespaces_are_refused_whatever_the_globs(addons: bool, namespace: str) -> None:
    grants = everything(addons)
    assert namespace_allowed(grants, "team-w") and namespace_allowed(grants, "herd-other")
    assert not namespace_allowed(grants, namespace)
    assert not namespace_allowed(grants.on_cluster(cluster("c-1", env="staging")), namespace)
    manifest = (
        f"kind: ServiceAccount\napiVersion: v1\nmetadata: {{name: x, namespace: {namespace}}}"
    )
    assert forbidden_objects(grants, manifest, "team-w", ()) == [
        ForbiddenObject("ServiceAccount", "x", namespace)
    ]
    (problem,) = spec_problems(grants, spec({"name": "web", "namespace": namespace}))
    assert problem.field == "spec.charts[0].namespace"
    assert "no tenant may use it" in problem.message


def test_unrestricted_grants_reserve_nothing() -> None:
    admin = grants_for(ADMIN, [], admin_namespace=ADMIN, addon_namespaces=ADDON_NAMESPACES)
    assert namespace_allowed(admin, IDENTITY_NAMESPACE)
    assert namespace_allowed(admin, "suse-observability")
    assert not addon_release(admin, "suse-observability")


def insights(namespace: str = "suse-observability") -> ChartSpec:
    return ChartSpec(
        name="herd-insights",
        repo="https://bundled.herd.invalid/charts",
        version="0.1.0",
        namespace=namespace,
        release_name="herd-insights-web-abc123",
    )


def test_dashboards_need_addons_not_target_namespaces() -> None:
    granted = everything(addons=True)
    assert addon_namespace_problems(granted, [insights()]) == []
    assert addon_release(granted, "suse-observability")
    assert not addon_release(granted, "team-w")
    (problem,) = addon_namespace_problems(everything(addons=False), [insights()])
    assert problem.field == "spec.observability"
    assert "addons: true" in problem.message
    (problem,) = addon_namespace_problems(granted, [insights("team-w")])
    assert "did not know as an add-on namespace" in problem.message


def test_observability_for_a_granted_tenant_passes_the_spec_checks() -> None:
    granted = everything(addons=True)
    stack = spec({"name": "web", "namespace": "team-w"}, observability=True, security="enabled")
    assert spec_problems(granted, stack) == []
    refused = spec_problems(everything(addons=False), stack)
    assert [p.field for p in refused] == ["spec.security", "spec.observability"]


# ---------------------------------------------------------------------------------------
# Clusters


@pytest.mark.parametrize(
    ("target", "granted"),
    [
        (cluster("c-1", env="staging"), True),  # TEAM_A's selector
        (cluster("c-1", env="prod"), False),
        (cluster("c-1"), False),
        (cluster("c-m-prod1", env="prod"), True),  # TEAM_A_PROD by id
        (cluster("c-m-zz", "edge"), True),  # TEAM_A_PROD by name
        (cluster("c-m-zz", "edge-2"), False),
    ],
)
def test_cluster_granted(target: Cluster, granted: bool) -> None:
    assert cluster_granted(a(), target) is granted


def test_relabelling_a_cluster_moves_its_grant() -> None:
    assert not cluster_granted(a(), cluster("c-9", env="dev"))
    assert cluster_granted(a(), cluster("c-9", env="staging"))


def test_granted_clusters_keeps_order_and_says_why() -> None:
    clusters = [cluster("c-1", env="staging"), cluster("c-2", env="prod"), cluster("c-m-prod1")]
    kept, skipped = granted_clusters(a(), clusters)
    assert [c.id for c in kept] == ["c-1", "c-m-prod1"]
    assert [(s.cluster_id, s.reason) for s in skipped] == [
        ("c-2", "not granted (ClusterGrants team-a, team-a-prod of namespace team-a)")
    ]


def test_on_cluster_keeps_only_the_grants_covering_it() -> None:
    staging = a().on_cluster(cluster("c-1", env="staging"))
    assert staging.names == ["team-a"]
    assert namespace_allowed(staging, "team-a")
    assert not namespace_allowed(staging, "prod-a")
    assert not addons_allowed(staging)
    prod = a().on_cluster(cluster("c-m-prod1"))
    assert prod.names == ["team-a-prod"]
    assert not namespace_allowed(prod, "team-a-x")


# ---------------------------------------------------------------------------------------
# Namespaces and switches


@pytest.mark.parametrize(
    ("namespace", "allowed"),
    [
        ("team-a", True),
        ("team-a-cache", True),  # team-a-*
        ("team-a-", True),
        ("team-ab", False),
        ("team-b", False),
        ("kube-system", False),
        ("default", False),
        ("team-a-prod", True),
        ("prod-a", True),  # TEAM_A_PROD
        ("prod-a-1", False),
    ],
)
def test_namespace_allowed(namespace: str, allowed: bool) -> None:
    assert namespace_allowed(a(), namespace) is allowed


@pytest.mark.parametrize(
    ("namespace", "addons", "cluster_scoped"),
    [("team-a", True, False), ("team-b", False, True), ("team-c", False, False)],
)
def test_switches(namespace: str, addons: bool, cluster_scoped: bool) -> None:
    grants = grants_for(namespace, ALL, admin_namespace=ADMIN)
    assert addons_allowed(grants) is addons
    assert cluster_scoped_allowed(grants) is cluster_scoped


# ---------------------------------------------------------------------------------------
# Spec checks


def spec(*charts: dict[str, Any], **fields: Any) -> Any:
    return parse_spec(
        {
            "targets": {"selector": {"matchLabels": {"env": "staging"}}},
            "charts": [
                {"repo": "https://charts.example.com", "version": "1.0.0", **chart}
                for chart in charts
            ],
            **fields,
        }
    )


B = grants_for("team-b", ALL, admin_namespace=ADMIN)


@pytest.mark.parametrize(
    ("stack", "account", "expected"),
    [
        (spec({"name": "web", "namespace": "team-b"}), None, []),
        (spec({"name": "web", "namespace": "team-b-cache"}), None, []),
        (
            spec(
                {"name": "web", "namespace": "team-b"}, {"name": "db", "namespace": "kube-system"}
            ),
            None,
            [
                (
                    "spec.charts[1].namespace",
                    "namespace 'kube-system' is not in the targetNamespaces of "
                    "ClusterGrant team-b of namespace team-b",
                )
            ],
        ),
        (
            spec({"name": "web", "namespace": "team-b"}, security="enabled", observability=True),
            None,
            [
                (
                    "spec.security",
                    "add-ons are shared by the whole cluster and need a ClusterGrant with "
                    "addons: true (ClusterGrant team-b of namespace team-b)",
                ),
                (
                    "spec.observability",
                    "add-ons are shared by the whole cluster and need a ClusterGrant with "
                    "addons: true (ClusterGrant team-b of namespace team-b)",
                ),
            ],
        ),
        (
            spec(
                {"name": "web", "namespace": "team-b"},
                {
                    "name": "db",
                    "namespace": "team-b",
                    "values": {"from": [{"kind": "Secret", "name": "db"}]},
                },
            ),
            None,
            [
                (
                    "spec.serviceAccountName",
                    "spec.charts[1].values.from needs a ServiceAccount of namespace team-b to "
                    "read it as (Stacks outside Herd's namespace read ConfigMaps and Secrets "
                    "with their own rights)",
                )
            ],
        ),
        (
            spec(
                {
                    "name": "db",
                    "namespace": "team-b",
                    "values": {"from": [{"kind": "Secret", "name": "db"}]},
                }
            ),
            "deployer",
            [],
        ),
    ],
)
def test_spec_problems(stack: Any, account: str | None, expected: list[tuple[str, str]]) -> None:
    problems = spec_problems(B, stack, service_account_name=account)
    assert [(p.field, p.message) for p in problems] == expected


def test_addons_granted_by_one_grant_suffice() -> None:
    stack = spec({"name": "web", "namespace": "team-a"}, security="enabled")
    assert spec_problems(a(), stack) == []


def test_unrestricted_specs_pass_everything() -> None:
    admin = grants_for(ADMIN, ALL, admin_namespace=ADMIN)
    stack = spec(
        {
            "name": "web",
            "namespace": "kube-system",
            "values": {"from": [{"kind": "Secret", "name": "x"}]},
        },
        security="enabled",
    )
    assert spec_problems(admin, stack) == []


# ---------------------------------------------------------------------------------------
# Grants as listed from the API server


def test_an_invalid_grant_grants_nothing_and_is_named() -> None:
    good = TEAM_A.model_dump(by_alias=True)
    bad = {"apiVersion": "herd.suse.com/v1", "kind": "ClusterGrant", "metadata": {"name": "oops"}}
    bad["spec"] = {"namespaces": ["team-a"], "targetNamespaces": ["team-a"]}
    grants, invalid = parse_grants([good, bad])
    assert [g.name for g in grants] == ["team-a"]
    assert invalid == ["ClusterGrant oops grants nothing: spec.clusters: is required"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, {"spec": {"namespaces": ["a", "b"]}}, {"a", "b"}),
        ({"spec": {"namespaces": ["a"]}}, {"spec": {"namespaces": ["b"]}}, {"a", "b"}),
        ({"spec": {"namespaces": ["a"]}}, None, {"a"}),
        ({"spec": {}}, {"metadata": {}}, set()),
    ],
)
def test_affected_namespaces(
    old: dict[str, Any] | None, new: dict[str, Any] | None, expected: set[str]
) -> None:
    assert affected_namespaces(old, new) == expected
