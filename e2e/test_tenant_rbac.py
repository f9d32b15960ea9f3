"""Tenant RBAC on a real downstream API server: what Herd provisions from a grant lets helm,
impersonating the tenant, deploy into the granted namespaces and nothing else.

The downstream API server is the judge here (real RBAC, real `helm --kube-as-user`), so what
the render check cannot see is refused too. Fixture chart: `e2e/charts-tenancy/tenant-probe`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.testbed.chartrepo import ChartRepo, helm_binary, helm_env, run_helm
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl_run
from herd.api.grants import parse_grant
from herd.clusters.tenant_rbac import provision
from herd.kube.client import api_client_from_kubeconfig
from herd.names import TENANT_LABEL
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.render_check import ForbiddenObject, forbidden_objects
from herd.plan.tenancy import Grants, grants_for

CHARTS = Path(__file__).resolve().parent / "charts-tenancy"
WITH_CRD = Path(__file__).resolve().parent / "charts" / "with-crd"  # shared fixture, read only
TENANT = "team-a"
ACCOUNT = f"system:serviceaccount:herd-tenants:tenant-{TENANT}"
AS_TENANT = ["--as", ACCOUNT]  # the API server adds the ServiceAccount groups
HELM_AS_TENANT = ["--kube-as-user", ACCOUNT]


@pytest.fixture(scope="module")
def bed(downstream: list[BedCluster]) -> BedCluster:
    return downstream[0]


@pytest.fixture(scope="module")
def api(bed: BedCluster) -> Iterator[client.ApiClient]:
    api = api_client_from_kubeconfig(bed.kubeconfig)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    workdir = tmp_path_factory.mktemp("tenancy-charts")
    served = workdir / "repo"
    served.mkdir()
    run_helm(
        ["package", str(CHARTS / "tenant-probe"), "--destination", str(served)], workdir / "helm"
    )
    run_helm(["repo", "index", str(served)], workdir / "helm")
    with ChartRepo.serve(served) as running:
        yield running


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tenancy-helm")


def target(bed: BedCluster) -> Cluster:
    return Cluster(
        id="c-m-tenancy1",
        name=bed.name,
        labels={"env": "staging"},
        ready=True,
        source="file",
        kubeconfig=KubeconfigRef.file(bed.kubeconfig),
    )


def grants_of(bed: BedCluster, **spec: Any) -> Grants:
    grant = parse_grant(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "ClusterGrant",
            "metadata": {"name": TENANT},
            "spec": {
                "namespaces": [TENANT],
                "clusters": {"selector": {"matchLabels": {"env": "staging"}}},
                "targetNamespaces": [TENANT, f"{TENANT}-*"],
                **spec,
            },
        }
    )
    return grants_for(TENANT, [grant], admin_namespace="herd-system").on_cluster(target(bed))


def can_i(bed: BedCluster, *question: str) -> bool:
    done = kubectl_run(bed, "auth", "can-i", *question, *AS_TENANT)
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def eventually_can(bed: BedCluster, *question: str, timeout: float = 60.0) -> bool:
    """RBAC caches and role aggregation settle within seconds; wait for a yes, bounded."""
    deadline = time.monotonic() + timeout
    while not can_i(bed, *question):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def helm(
    bed: BedCluster, home: Path, *args: str, as_tenant: bool = True
) -> subprocess.CompletedProcess[str]:
    identity = HELM_AS_TENANT if as_tenant else []
    return subprocess.run(
        [helm_binary(), *args, "--kubeconfig", str(bed.kubeconfig), *identity],
        env=helm_env(home),
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )


def install(
    bed: BedCluster, home: Path, repo: ChartRepo, release: str, namespace: str, *values: str
) -> subprocess.CompletedProcess[str]:
    sets = [arg for value in values for arg in ("--set", value)]
    return helm(
        bed,
        home,
        "upgrade",
        "--install",
        release,
        "tenant-probe",
        "--repo",
        repo.url,
        "--version",
        "0.1.0",
        "--namespace",
        namespace,
        "--timeout",
        "2m",
        *sets,
    )


def test_the_tenant_may_act_in_its_namespaces_only(bed: BedCluster, api: client.ApiClient) -> None:
    scope = provision(api, grants_of(bed), create_namespaces=[TENANT, "kube-system"])
    assert "ClusterRole.rbac.authorization.k8s.io" in scope.kinds
    assert "Namespace" in scope.kinds and "ConfigMap" not in scope.kinds
    assert ("", "namespaces") in scope.resources
    assert kubectl_run(bed, "get", "namespace", TENANT).returncode == 0
    assert eventually_can(bed, "create", "deployments", "-n", TENANT)
    assert can_i(bed, "create", "secrets", "-n", TENANT)  # helm's release records
    assert not can_i(bed, "create", "deployments", "-n", "kube-system")
    assert not can_i(bed, "get", "secrets", "-n", "kube-system")
    assert not can_i(bed, "create", "configmaps", "-n", "default")
    assert not can_i(bed, "create", "clusterroles")
    assert not can_i(bed, "create", "namespaces")
    assert not can_i(bed, "create", "customresourcedefinitions")


def test_helm_as_the_tenant_installs_only_what_the_grant_allows(
    bed: BedCluster, api: client.ApiClient, repo: ChartRepo, helm_home: Path
) -> None:
    provision(api, grants_of(bed), create_namespaces=[TENANT])
    assert eventually_can(bed, "create", "configmaps", "-n", TENANT)

    done = install(bed, helm_home, repo, "probe-ok", TENANT)
    assert done.returncode == 0, done.stderr
    assert kubectl_run(bed, "get", "configmap", "probe-ok-probe", "-n", TENANT).returncode == 0

    refused = install(bed, helm_home, repo, "probe-system", "kube-system")
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr, refused.stderr
    assert (
        kubectl_run(bed, "get", "configmap", "probe-system-probe", "-n", "kube-system").returncode
        != 0
    )

    # What the render check would have caught, the API server refuses on its own.
    elsewhere = install(bed, helm_home, repo, "probe-elsewhere", TENANT, "alsoIn=default")
    assert elsewhere.returncode != 0
    assert "forbidden" in elsewhere.stderr, elsewhere.stderr
    assert kubectl_run(bed, "get", "configmap", "probe-elsewhere-probe-elsewhere").returncode != 0
    scoped = install(bed, helm_home, repo, "probe-scoped", TENANT, "clusterRole=true")
    assert scoped.returncode != 0
    assert "clusterroles.rbac.authorization.k8s.io" in scoped.stderr, scoped.stderr
    assert kubectl_run(bed, "get", "clusterrole", "probe-scoped-probe-reader").returncode != 0


def test_the_render_check_on_a_real_render_and_discovery(
    bed: BedCluster, api: client.ApiClient, helm_home: Path
) -> None:
    grants = grants_of(bed)
    scope = provision(api, grants, create_namespaces=[TENANT])
    rendered = helm(
        bed,
        helm_home,
        "template",
        "probe",
        str(CHARTS / "tenant-probe"),
        "--namespace",
        TENANT,
        "--set",
        "clusterRole=true",
        "--set",
        "alsoIn=kube-system",
        as_tenant=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert forbidden_objects(grants, rendered.stdout, TENANT, scope.kinds) == [
        ForbiddenObject("ClusterRole", "probe-probe-reader", None),
        ForbiddenObject("ConfigMap", "probe-probe-elsewhere", "kube-system"),
    ]
    allowed = forbidden_objects(
        grants_of(bed, clusterScopedResources=True), rendered.stdout, TENANT, scope.kinds
    )
    assert allowed == [ForbiddenObject("ConfigMap", "probe-probe-elsewhere", "kube-system")]


def test_a_crd_from_crds_dir_is_caught_by_both_checks(
    bed: BedCluster, api: client.ApiClient, helm_home: Path
) -> None:
    grants = grants_of(bed)
    scope = provision(api, grants, create_namespaces=[TENANT])
    rendered = helm(
        bed,
        helm_home,
        "template",
        "widgets",
        str(WITH_CRD),
        "--namespace",
        TENANT,
        "--include-crds",
        as_tenant=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert forbidden_objects(grants, rendered.stdout, TENANT, scope.kinds) == [
        ForbiddenObject("CustomResourceDefinition", "widgets.fixtures.herd.test", None)
    ]
    # Without the render check, the API server refuses the CRD (or, should another test have
    # installed it already, the Widget: custom resources are not in the admin role).
    done = helm(bed, helm_home, "upgrade", "--install", "widgets", str(WITH_CRD), "-n", TENANT)
    assert done.returncode != 0
    assert "forbidden" in done.stderr, done.stderr


def test_cluster_scoped_resources_are_granted_and_revoked(
    bed: BedCluster, api: client.ApiClient, repo: ChartRepo, helm_home: Path
) -> None:
    provision(api, grants_of(bed, clusterScopedResources=True), create_namespaces=[TENANT])
    assert eventually_can(bed, "create", "clusterroles")
    assert not can_i(bed, "get", "secrets", "-n", "kube-system")  # still no other namespace
    done = install(bed, helm_home, repo, "probe-cr", TENANT, "clusterRole=true")
    assert done.returncode == 0, done.stderr
    assert kubectl_run(bed, "get", "clusterrole", "probe-cr-probe-reader").returncode == 0

    provision(api, grants_of(bed), create_namespaces=[TENANT])
    left = kubectl_run(
        bed,
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        f"{TENANT_LABEL}={TENANT}",
        "-o",
        "name",
    )
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout
    deadline = time.monotonic() + 60
    while can_i(bed, "create", "clusterroles") and time.monotonic() < deadline:
        time.sleep(1)
    assert not can_i(bed, "create", "clusterroles")
    done = helm(bed, helm_home, "uninstall", "probe-cr", "--namespace", TENANT, as_tenant=False)
    assert done.returncode == 0, done.stderr


def test_a_namespace_taken_out_of_the_grant_loses_its_binding(
    bed: BedCluster, api: client.ApiClient
) -> None:
    provision(api, grants_of(bed), create_namespaces=[TENANT, f"{TENANT}-extra"])
    assert eventually_can(bed, "create", "deployments", "-n", f"{TENANT}-extra")
    provision(api, grants_of(bed, targetNamespaces=[TENANT]), create_namespaces=[TENANT])
    deadline = time.monotonic() + 60
    while (
        can_i(bed, "create", "deployments", "-n", f"{TENANT}-extra") and time.monotonic() < deadline
    ):
        time.sleep(1)
    assert not can_i(bed, "create", "deployments", "-n", f"{TENANT}-extra")
    assert can_i(bed, "create", "deployments", "-n", TENANT)
    assert kubectl_run(bed, "get", "namespace", f"{TENANT}-extra").returncode == 0  # never deleted


def test_admin_stacks_get_no_tenant_rbac(bed: BedCluster, api: client.ApiClient) -> None:
    admin = grants_for("herd-system", [], admin_namespace="herd-system")
    scope = provision(api, admin, create_namespaces=["herd-admin-only"])
    assert "Namespace" in scope.kinds
    assert kubectl_run(bed, "get", "namespace", "herd-admin-only").returncode != 0
