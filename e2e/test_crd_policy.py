"""`charts[].crds` on real API servers: helm's behaviour (Create), Skip, and CreateReplace,
where Herd applies the chart's CRDs server-side before the helm upgrade.

Fixture chart `gadgets` (`e2e/charts/gadgets`): 0.1.0 ships the Gadget CRD at schema 1
(label `fixtures.herd.test/schema: "1"`, version v1alpha1 with `spec.size`); 0.2.0 ships it
at schema 2 (adds `spec.mode` and the served version v1beta1) plus a subchart whose crds/
holds the Gizmo CRD. Its templates create a Gadget unless `gadget.create` is false.

CRDs are cluster-scoped, so each test takes a downstream cluster of its own and removes the
CRDs it made at the end. The policies run through `herd apply` / `herd plan` as a pipeline
runs them; the tenant case runs the engine in-process with a ClusterGrant.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed.chartrepo import helm_binary, helm_env
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl_run
from e2e.testbed.herd_cli import herd, table, unique
from herd.api import parse_stack
from herd.api.grants import parse_grant
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.helm.chart_crds import chart_crds
from herd.helm.crd_apply import CrdStep
from herd.helm.environment import HelmEnvironment
from herd.helm.failures import FailureKind, HelmFailure
from herd.plan.results import State
from herd.plan.tenancy import Grants, grants_for, tenant_identity

GADGETS = "gadgets.fixtures.herd.test"
GIZMOS = "gizmos.fixtures.herd.test"
SCHEMA = "fixtures.herd.test/schema"
TENANT = "crd-tenant"
RELEASE = "gadgets"  # the chart's name in the Stack: also the release and the Gadget


def crd(cluster: BedCluster, name: str) -> dict[str, Any] | None:
    """The CRD as the API server has it, managedFields included; None when absent."""
    done = kubectl_run(cluster, "get", "crd", name, "-o", "json", "--show-managed-fields")
    if done.returncode != 0:
        assert "NotFound" in done.stderr, done.stderr
        return None
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def managers(body: dict[str, Any]) -> dict[str, str]:
    """Field manager -> operation (Apply, Update) of an object's managedFields."""
    return {m["manager"]: m["operation"] for m in body["metadata"].get("managedFields") or []}


def versions(body: dict[str, Any]) -> list[str]:
    return [v["name"] for v in body["spec"]["versions"]]


def mode_in_schema(body: dict[str, Any]) -> bool:
    schema = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return "mode" in schema["properties"]["spec"]["properties"]


@pytest.fixture
def removes_crds() -> Iterator[Callable[[BedCluster], None]]:
    """Register a cluster whose fixture CRDs are deleted at teardown (helm never deletes them)."""
    clusters: list[BedCluster] = []
    yield clusters.append
    for cluster in clusters:
        done = kubectl_run(
            cluster, "delete", "crd", GADGETS, GIZMOS, "--ignore-not-found", "--wait"
        )
        assert done.returncode == 0, done.stderr


class CliStack:
    """One Stack file with the `gadgets` chart on one cluster, applied with `herd`."""

    def __init__(self, path: Path, cluster: BedCluster, repo: str) -> None:
        self.path, self.cluster, self.repo = path, cluster, repo
        self.name = unique("crds")
        self.clusters = ["--kubeconfig", f"{cluster.kubeconfig}=bed"]

    def write(self, version: str, **fields: Any) -> None:
        chart = {
            "name": RELEASE,
            "repo": self.repo,
            "version": version,
            "namespace": self.name,
            **fields,
        }
        body = {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": self.name, "namespace": "ci"},
            "spec": {"targets": {"clusterIds": ["bed"]}, "charts": [chart]},
        }
        self.path.write_text(yaml.safe_dump(body))

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return herd(command, "-f", self.path, *self.clusters)

    def apply(self, version: str, **fields: Any) -> subprocess.CompletedProcess[str]:
        self.write(version, **fields)
        done = self.run("apply")
        assert done.returncode == 0, done.stdout + done.stderr
        assert [r["STATUS"] for r in table(done.stdout)] == ["Deployed"]
        return done

    def gadget(self) -> dict[str, Any]:
        done = kubectl_run(self.cluster, "get", "gadgets", "-n", self.name, RELEASE, "-o", "json")
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found


@pytest.fixture
def cli_stack(
    tmp_path: Path, chart_repo_url: str, removes_crds: Callable[[BedCluster], None]
) -> Iterator[Callable[[BedCluster], CliStack]]:
    made: list[CliStack] = []

    def make(cluster: BedCluster) -> CliStack:
        removes_crds(cluster)
        made.append(CliStack(tmp_path / f"stack-{len(made)}.yaml", cluster, chart_repo_url))
        return made[-1]

    yield make
    for stack in made:
        if stack.path.exists():
            done = stack.run("delete")
            assert done.returncode == 0, done.stdout + done.stderr


def test_create_is_helms_behaviour_the_crd_stays_at_the_first_version(
    downstream: list[BedCluster], cli_stack: Callable[[BedCluster], CliStack]
) -> None:
    cluster = downstream[0]
    stack = cli_stack(cluster)

    stack.apply("0.1.0")
    first = crd(cluster, GADGETS)
    assert first is not None and first["metadata"]["labels"][SCHEMA] == "1"
    assert stack.gadget()["spec"] == {"size": 1}

    stack.apply("0.2.0")

    after = crd(cluster, GADGETS)
    assert after is not None
    assert after["metadata"]["labels"][SCHEMA] == "1"  # helm upgrade never touches crds/
    assert versions(after) == ["v1alpha1"] and not mode_in_schema(after)
    assert "herd" not in managers(after)
    assert crd(cluster, GIZMOS) is None  # nor creates the new subchart's CRD


def test_create_replace_applies_the_new_crds_before_the_upgrade(
    downstream: list[BedCluster], cli_stack: Callable[[BedCluster], CliStack]
) -> None:
    cluster = downstream[1]
    stack = cli_stack(cluster)
    stack.apply("0.1.0")  # installed with helm's default: helm created the CRD
    created = crd(cluster, GADGETS)
    assert created is not None and "herd" not in managers(created)

    stack.write("0.2.0", crds="CreateReplace", values={"inline": {"gadget": {"mode": "fast"}}})
    plan = stack.run("plan")
    assert plan.returncode == 3, plan.stdout + plan.stderr
    assert "CRDs: CreateReplace" in table(plan.stdout)[0]["DETAIL"]
    upgraded = stack.apply(
        "0.2.0", crds="CreateReplace", values={"inline": {"gadget": {"mode": "fast"}}}
    )

    after = crd(cluster, GADGETS)
    assert after is not None
    assert after["metadata"]["labels"][SCHEMA] == "2"
    assert versions(after) == ["v1alpha1", "v1beta1"] and mode_in_schema(after)
    assert managers(after).get("herd") == "Apply"  # server-side apply, Herd's field manager
    gizmos = crd(cluster, GIZMOS)  # from the subchart's crds/
    assert gizmos is not None and managers(gizmos).get("herd") == "Apply"
    # The Gadget helm wrote kept spec.mode: the CRD knew it before helm ran (else pruned).
    assert stack.gadget()["spec"] == {"size": 1, "mode": "fast"}
    assert "CRDs: CreateReplace (2)" in upgraded.stderr  # the row while it deploys

    again = stack.run("plan")  # applied once: nothing more to do
    assert again.returncode == 0, again.stdout + again.stderr


def test_create_replace_on_a_first_install_creates_the_crds_and_their_objects(
    downstream: list[BedCluster], cli_stack: Callable[[BedCluster], CliStack]
) -> None:
    cluster = downstream[0]
    stack = cli_stack(cluster)

    stack.apply("0.2.0", crds="CreateReplace", values={"inline": {"gadget": {"mode": "slow"}}})

    for name in (GADGETS, GIZMOS):
        created = crd(cluster, name)
        assert created is not None and managers(created).get("herd") == "Apply"
        assert "helm" not in managers(created)  # helm ran with --skip-crds
    # helm created the Gadget right after Herd's apply: the kind was served already.
    assert stack.gadget()["spec"] == {"size": 1, "mode": "slow"}


def test_skip_installs_no_crd(
    downstream: list[BedCluster], cli_stack: Callable[[BedCluster], CliStack]
) -> None:
    cluster = downstream[2]
    stack = cli_stack(cluster)

    stack.apply("0.2.0", crds="Skip", values={"inline": {"gadget": {"create": False}}})

    assert crd(cluster, GADGETS) is None and crd(cluster, GIZMOS) is None
    done = kubectl_run(cluster, "get", "configmap", "-n", stack.name, f"{RELEASE}-gadgets")
    assert done.returncode == 0, done.stderr  # the rest of the chart is there


# -- a tenant Stack: the CRDs are applied as the tenant, only with the grant -------------


@pytest.fixture
async def tenant_engine(
    downstream: list[BedCluster], removes_crds: Callable[[BedCluster], None], tmp_path: Path
) -> AsyncIterator[Engine]:
    cluster = downstream[2]
    removes_crds(cluster)
    store = KubeconfigStore(None)
    env = HelmEnvironment()
    entry = FileCluster("tenant-bed", cluster.kubeconfig, labels={"herd.test/crds": TENANT})
    try:
        yield Engine(Inventory([FileSource([entry])], store), env)
    finally:
        kubeconfig = f"--kubeconfig={cluster.kubeconfig}"
        for release in ("gadgets", "other"):
            uninstall = ["uninstall", release, f"--namespace={TENANT}", "--ignore-not-found"]
            subprocess.run(
                [helm_binary(), *uninstall, kubeconfig],
                env=helm_env(tmp_path / "helm"),
                check=False,
                capture_output=True,
                timeout=120,
            )
        store.close()
        env.close()


def tenant_grants(*, cluster_scoped: bool) -> Grants:
    grant = parse_grant(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "ClusterGrant",
            "metadata": {"name": TENANT},
            "spec": {
                "namespaces": [TENANT],
                "clusters": {"selector": {"matchLabels": {"herd.test/crds": TENANT}}},
                "targetNamespaces": [TENANT],
                "clusterScopedResources": cluster_scoped,
            },
        }
    )
    return grants_for(TENANT, [grant], admin_namespace="herd-system")


async def test_a_tenant_applies_crds_only_when_granted_cluster_scoped_objects(
    downstream: list[BedCluster], tenant_engine: Engine, chart_repo_url: str
) -> None:
    cluster = downstream[2]
    charts = [
        {
            "name": "gadgets",
            "repo": chart_repo_url,
            "version": "0.2.0",
            "namespace": TENANT,
            "crds": "CreateReplace",
            # No Gadget: the built-in admin role a tenant gets knows no new kinds (a chart
            # would ship an aggregate-to-admin ClusterRole, created too late for its own CR).
            "values": {"inline": {"gadget": {"create": False}}},
        },
        {"name": "other", "chart": "app", "repo": chart_repo_url, "version": "0.1.0"}
        | {"namespace": TENANT},
    ]
    stack = parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": "crds", "namespace": TENANT},
            "spec": {
                "targets": {"selector": {"matchLabels": {"herd.test/crds": TENANT}}},
                "charts": charts,
            },
        }
    )

    denied = await tenant_engine.apply(stack, grants=tenant_grants(cluster_scoped=False))

    rows = {r.chart: r for r in denied.releases}
    assert rows["gadgets"].state is State.FAILED
    assert f"CustomResourceDefinition {GADGETS} (cluster-scoped)" in rows["gadgets"].message
    assert rows["other"].state is State.DEPLOYED  # the failure stays that release's
    assert crd(cluster, GADGETS) is None

    allowed = await tenant_engine.apply(stack, grants=tenant_grants(cluster_scoped=True))

    rows = {r.chart: r for r in allowed.releases}
    assert rows["gadgets"].state is State.DEPLOYED, rows["gadgets"].message
    applied = crd(cluster, GADGETS)
    assert applied is not None and managers(applied).get("herd") == "Apply"
    assert crd(cluster, GIZMOS) is not None


def test_the_crd_apply_acts_as_the_tenant_and_a_refusal_names_the_crd(
    downstream: list[BedCluster], removes_crds: Callable[[BedCluster], None]
) -> None:
    """The API server is the judge: an identity without RBAC gets a classified row failure."""
    cluster = downstream[2]
    removes_crds(cluster)
    chart_dir = Path(__file__).resolve().parent / "charts" / "gadgets"
    crds = chart_crds(chart_dir)
    nobody = tenant_identity("crd-nobody")  # no ClusterGrant: no RBAC provisioned at all

    with pytest.raises(HelmFailure) as raised:
        asyncio.run(CrdStep().apply("bed", cluster.kubeconfig, nobody, crds))

    assert raised.value.kind is FailureKind.FORBIDDEN and not raised.value.transient
    assert raised.value.message.startswith(
        f"cannot apply CRD {GADGETS} (from gadgets/crds/{GADGETS}.yaml) as "
        "system:serviceaccount:herd-tenants:tenant-crd-nobody: HTTP 403"
    )
    assert "clusterScopedResources: true" in raised.value.message
    assert crd(cluster, GADGETS) is None

    asyncio.run(CrdStep().apply("bed", cluster.kubeconfig, None, crds))  # the admin's own

    applied = crd(cluster, GADGETS)
    assert applied is not None and managers(applied).get("herd") == "Apply"
