"""Tenancy as the engine, status and operator settings apply it (pure parts and fakes)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import herd.rollout.tenants as tenants_module
from herd.api import SkippedCluster, StackSpec
from herd.api.grants import parse_grant
from herd.api.v1 import Stack
from herd.engine.engine import Engine
from herd.engine.targets import KEPT_MESSAGE, not_granted_rows
from herd.errors import SpecError
from herd.helm.environment import HelmEnvironment
from herd.names import LABEL_STACK
from herd.operator.config import OperatorConfig
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.decide import Action, decide
from herd.plan.desired import plan_stack
from herd.plan.placement import GpuSupply
from herd.plan.releases import ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.plan.tenancy import Grants, Mode, grants_for
from herd.rollout.tenants import RenderCheck
from herd.status.build import NOT_GRANTED_REASON, Phase, not_granted, phase_of, stack_status

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GRANT = parse_grant(
    {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": "team-a"},
        "spec": {
            "namespaces": ["team-a"],
            "clusters": {"selector": {"matchLabels": {"env": "staging"}}},
            "targetNamespaces": ["team-a-*"],
        },
    }
)
TEAM_A = grants_for("team-a", [GRANT], admin_namespace="herd-system")


def spec(namespace: str = "team-a-apps", **extra: Any) -> StackSpec:
    return StackSpec.model_validate(
        {
            "targets": {"clusterIds": ["c-staging", "c-prod"]},
            "charts": [
                {"name": "db", "repo": "https://r", "version": "1.0.0", "namespace": namespace}
            ],
            **extra,
        }
    )


def make_stack(namespace: str, body: StackSpec) -> Stack:
    return Stack(
        apiVersion="herd.suse.com/v1",
        kind="Stack",
        metadata={"namespace": namespace, "name": "app"},
        spec=body,
    )


def cluster(cluster_id: str, **labels: str) -> Cluster:
    return Cluster(
        id=cluster_id,
        name=cluster_id,
        labels=labels,
        ready=True,
        source="rancher",
        kubeconfig=KubeconfigRef.secret("fleet-default", f"{cluster_id}-kubeconfig", "value"),
    )


def result(cluster_id: str, state: State) -> ReleaseResult:
    return ReleaseResult(ReleaseKey(cluster_id, "team-a-apps", "db"), "db", state)


# -- status ------------------------------------------------------------------------------


def test_a_stack_granted_nowhere_is_failed_with_reason_not_granted() -> None:
    releases = [result("c-prod", State.NOT_GRANTED), result("c-other", State.NOT_GRANTED)]
    skipped = [SkippedCluster(cluster_id="c-prod", reason="not granted (x)")]
    status = stack_status(
        releases, targets=["c-prod"], skipped=skipped, chart_count=1, generation=1, now=NOW
    )
    assert status.phase == Phase.FAILED
    assert {c.reason for c in status.conditions} == {NOT_GRANTED_REASON}
    assert status.deployment_counts == {"NotGranted": 2}


def test_partly_granted_is_degraded_and_not_granted_rows_come_early() -> None:
    releases = [result("c-staging", State.DEPLOYED), result("c-prod", State.NOT_GRANTED)]
    skipped = [SkippedCluster(cluster_id="c-prod", reason="not granted (x)")]
    assert phase_of(releases, skipped) == Phase.DEGRADED
    assert not not_granted(releases, skipped)
    status = stack_status(
        releases, targets=["c-staging"], skipped=skipped, chart_count=1, generation=1, now=NOW
    )
    assert [r.status for r in status.deployments] == ["NotGranted", "Deployed"]
    assert {c.reason for c in status.conditions} == {"ReleasesFailed"}


@pytest.mark.parametrize(
    ("releases", "skipped", "expected"),
    [
        ([], [SkippedCluster(cluster_id="c", reason="not granted (x)")], True),
        ([], [SkippedCluster(cluster_id="c", reason="cluster is not ready")], False),
        ([], [], False),
        ([result("c", State.NOT_GRANTED), result("d", State.UNINSTALLED)], [], True),
        ([result("c", State.NOT_GRANTED), result("d", State.FAILED)], [], False),
    ],
)
def test_not_granted(
    releases: list[ReleaseResult], skipped: list[SkippedCluster], expected: bool
) -> None:
    assert not_granted(releases, skipped) is expected


# -- conflicts between tenants -----------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "words"),
    [
        ("team-a.other", "managed by Stack team-a.other"),
        ("team-b.secret-project", "owned by another Stack"),
        ("h-" + "0" * 40, "owned by another Stack"),
        ("", "managed by another tool"),
    ],
)
def test_a_conflict_names_the_owner_only_within_the_namespace(other: str, words: str) -> None:
    desired = plan_stack(spec()).releases_for("c-staging")[0]
    labels = {"name": "db", "status": "deployed", "version": "1"}
    if other:
        labels[LABEL_STACK] = other
    observed = ObservedRelease("team-a-apps", "db", "deployed", 1, labels)
    decision = decide(desired, observed, "team-a.mine")
    assert decision.action is Action.CONFLICT
    assert words in decision.reason
    assert "team-b" not in decision.reason


# -- the engine --------------------------------------------------------------------------


def test_not_granted_rows_say_the_release_is_kept() -> None:
    plan = plan_stack(spec())
    skip = SkippedCluster(cluster_id="c-prod", reason="not granted (ClusterGrant team-a)")
    [row] = not_granted_rows(plan, [skip])
    assert row.state is State.NOT_GRANTED
    assert row.key == ReleaseKey("c-prod", "team-a-apps", "db")
    assert row.message == f"not granted (ClusterGrant team-a): {KEPT_MESSAGE}"


class FakeInventory:
    def __init__(self, clusters: list[Cluster]) -> None:
        self._clusters = clusters
        self.asked: list[str] = []

    async def clusters(self) -> list[Cluster]:
        return self._clusters

    async def kubeconfig(self, cluster: Cluster) -> Path:
        self.asked.append(cluster.id)
        raise AssertionError("a cluster that is not granted must not be contacted")


class FakeValues:
    def __init__(self) -> None:
        self.calls: list[str | None] = []

    async def read(
        self, namespace: str, spec: StackSpec, *, service_account: str | None = None
    ) -> dict[Any, Any]:
        self.calls.append(service_account)
        return {}


def engine(inventory: FakeInventory, values: FakeValues | None = None) -> Engine:
    return Engine(inventory, HelmEnvironment(), values=values)


def test_clusters_not_granted_are_not_contacted() -> None:
    inventory = FakeInventory([cluster("c-prod", env="prod")])
    stack = make_stack("team-a", spec())
    outcome = asyncio.run(engine(inventory).apply(stack, grants=TEAM_A))
    assert inventory.asked == []
    assert [r.state for r in outcome.releases] == [State.NOT_GRANTED]
    assert outcome.denied == {"c-prod"}
    assert "not granted" in outcome.skipped[0].reason
    assert "c-prod" not in outcome.holding  # nothing learnt about it: the record decides


def test_a_namespace_outside_the_grant_is_a_spec_error_before_anything() -> None:
    inventory = FakeInventory([cluster("c-staging", env="staging")])
    values = FakeValues()
    stack = make_stack("team-a", spec("kube-system"))
    with pytest.raises(SpecError) as raised:
        asyncio.run(engine(inventory, values).apply(stack, grants=TEAM_A))
    assert "spec.charts[0].namespace" in str(raised.value)
    assert "ClusterGrant team-a" in str(raised.value)
    assert inventory.asked == []
    assert values.calls == []


@pytest.mark.parametrize(
    ("grants", "account"),
    [
        (TEAM_A, "deployer"),
        (grants_for("team-a", [], admin_namespace="herd-system", mode=Mode.OPEN), "deployer"),
        (grants_for("herd-system", [], admin_namespace="herd-system"), None),
        (None, None),
    ],
)
def test_values_are_read_as_the_service_account_except_for_admin_and_cli(
    grants: Grants | None, account: str | None
) -> None:
    values = FakeValues()
    extra = {"serviceAccountName": "deployer"}
    stack = make_stack("team-a", spec(**extra))
    asyncio.run(engine(FakeInventory([]), values).plan(stack, grants=grants))
    assert values.calls == [account]


# -- the render check and settings -------------------------------------------------------

MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: ok}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
"""


def test_render_check_names_the_forbidden_object() -> None:
    check = RenderCheck(TEAM_A, frozenset({"ClusterRole.rbac.authorization.k8s.io"}))
    message = asyncio.run(check.problems(MANIFEST, "team-a-apps"))  # in a worker process
    assert "ClusterRole reader (cluster-scoped)" in message
    assert "ConfigMap" not in message
    assert asyncio.run(check.problems(MANIFEST.split("---", maxsplit=1)[0], "team-a-apps")) == ""


@pytest.mark.parametrize(
    ("raw", "mode"),
    [("", Mode.GRANTS), ("grants", Mode.GRANTS), ("open", Mode.OPEN), (" Open ", Mode.OPEN)],
)
def test_herd_tenancy(raw: str, mode: Mode) -> None:
    assert OperatorConfig.from_env({"HERD_TENANCY": raw}).tenancy is mode


def test_herd_tenancy_refuses_other_values() -> None:
    with pytest.raises(ValueError, match="HERD_TENANCY"):
        OperatorConfig.from_env({"HERD_TENANCY": "closed"})


# -- the operator's grant poll -----------------------------------------------------------


class FakeRuntime:
    def __init__(self) -> None:
        self.config = OperatorConfig()
        self.api = None
        self._grants: dict[str, Any] | None = None
        self._signals = {
            ("team-a", "app"): None,
            ("team-b", "app"): None,
            ("herd-system", "x"): None,
        }
        self.signalled: list[tuple[str, str]] = []

    def signal(self, key: tuple[str, str]) -> None:
        self.signalled.append(key)

    def kept(self) -> list[tuple[str, str]]:
        return list(self._signals)


def test_a_grant_change_wakes_the_stacks_of_the_namespaces_it_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from herd.operator import runtime as module  # noqa: PLC0415

    listed = [[GRANT], [GRANT], []]
    monkeypatch.setattr(module, "list_grants", lambda api: (listed.pop(0), []))
    fake = FakeRuntime()
    watch = module.Runtime.check_grants
    logger = logging.getLogger("test")
    asyncio.run(watch(fake, logger, fake))  # type: ignore[arg-type]  # first look: nothing to compare
    asyncio.run(watch(fake, logger, fake))  # type: ignore[arg-type]  # unchanged
    assert fake.signalled == []
    asyncio.run(watch(fake, logger, fake))  # type: ignore[arg-type]  # team-a's grant deleted
    assert fake.signalled == [("team-a", "app")]


def test_tenant_rbac_is_provisioned_once_until_the_grants_or_namespaces_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []

    def provision(kubeconfig: Path, grants: Grants, namespaces: list[str]) -> frozenset[str]:
        calls.append(namespaces)
        return frozenset({"ClusterRole.rbac.authorization.k8s.io"})

    monkeypatch.setattr(tenants_module, "_provision", provision)
    cache = tenants_module.TenantClusters()
    other = grants_for("team-a", [GRANT, GRANT.model_copy()], admin_namespace="herd-system")

    async def passes() -> None:
        config = Path("/nonexistent")
        await cache.prepare("c1", config, TEAM_A, {"team-a-x"})
        await cache.prepare("c1", config, TEAM_A, {"team-a-x"})  # cached
        await cache.prepare("c1", config, TEAM_A, {"team-a-y"})  # a new namespace
        await cache.prepare("c1", config, TEAM_A, {"team-a-x"})  # both ensured: cached
        await cache.prepare("c2", config, TEAM_A, {"team-a-x"})  # another cluster
        check = await cache.prepare("c1", config, other, {"team-a-x"})  # grants changed
        assert check.cluster_scoped == {"ClusterRole.rbac.authorization.k8s.io"}

    asyncio.run(passes())
    assert calls == [["team-a-x"], ["team-a-x", "team-a-y"], ["team-a-x"], ["team-a-x"]]


class GpuInventory(FakeInventory):
    """Kubeconfigs for granted clusters only (asking for another fails the test)."""

    async def kubeconfig(self, cluster: Cluster) -> Path:
        if cluster.id != "c-staging":
            return await super().kubeconfig(cluster)
        self.asked.append(cluster.id)
        return Path("/nonexistent/kubeconfig")


def test_placement_picks_only_among_granted_clusters() -> None:
    """c-prod has more free GPUs but is not granted: it is neither read nor picked."""
    read: list[str] = []

    async def supply(kubeconfigs: Any, own: Any) -> dict[str, GpuSupply]:
        read.extend(kubeconfigs)
        return {c: GpuSupply(allocatable=1, free=1) for c in kubeconfigs}

    inventory = GpuInventory([cluster("c-staging", env="staging"), cluster("c-prod", env="prod")])
    placed = make_stack("team-a", spec(targets={"clusterIds": ["c-staging", "c-prod"],
                                                "placement": {"pickN": 1}}))  # fmt: skip
    found = Engine(inventory, HelmEnvironment(), gpu_supply=supply)
    result, reachable, departed, leaving = asyncio.run(found._resolve(placed, None, TEAM_A))
    assert read == ["c-staging"]
    assert inventory.asked == ["c-staging"]
    assert result.placement is not None
    assert result.placement.picked == ("c-staging",)
    assert "c-prod" not in result.placement.not_picked
    assert [t.cluster for t in reachable] == ["c-staging"]
    assert departed == leaving == []
    assert result.denied == {"c-prod"}
