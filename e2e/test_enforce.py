"""`security: {enforce: true}` on the test bed: real API servers, helm, charts, and
NeuVector's real `NvAdmissionControlSecurityRule` CRD (`testbed/manifests/`, from its
CRD chart) installed on two of the downstream clusters, so their API servers validate the rule; the
third has no such CRD, and its failure is reported per cluster.

A Stack with two chart namespaces and `failOn: Critical` is applied through the engine
(NeuVector's `core` stand-in first, as the add-on): each cluster's one `local` object
(the only name NeuVector accepts) then holds the Stack's rule, accepted by the real CRD,
denying images with a CVSS 9+ vulnerability in exactly those namespaces, beside the
cluster admin's own rule, which is kept. Turning `enforce` off removes the Stack's rule;
applying it again and deleting the Stack removes it again (and the object, where nothing
else was in it). The CRD's schema is in force: the API server refuses a rule
whose action is not allow/deny.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl, kubectl_run
from herd.addons.catalog import AddonCatalog
from herd.api import parse_stack
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment
from herd.plan.admission import rule_id
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.results import State

CRD = Path(__file__).resolve().parent / "testbed" / "manifests" / "neuvector-admission-crd.yaml"
RULES = "nvadmissioncontrolsecurityrules.neuvector.com"
ADMIN_RULE = {
    "action": "deny",
    "comment": "the cluster admin's: no privileged containers",
    "criteria": [{"name": "runAsPrivileged", "op": "=", "value": "true"}],
}
ADMIN_LOCAL = {
    "apiVersion": "neuvector.com/v1",
    "kind": "NvAdmissionControlSecurityRule",
    "metadata": {"name": "local"},
    "spec": {
        "config": {"enable": True, "mode": "protect", "client_mode": "service"},
        "rules": [ADMIN_RULE],
    },
}


class Inventory:
    def __init__(self, downstream: list[BedCluster]) -> None:
        self.beds = {f"c-m-enf{i}": bed for i, bed in enumerate(downstream, start=1)}
        self.with_crd = dict(list(self.beds.items())[:2])  # the third has no NeuVector CRD

    async def clusters(self) -> list[Cluster]:
        return [
            Cluster(
                id=cluster_id,
                name=bed.name,
                labels={"enforce": "e2e"},
                ready=True,
                source="file",
                kubeconfig=KubeconfigRef.file(bed.kubeconfig),
            )
            for cluster_id, bed in self.beds.items()
        ]

    async def kubeconfig(self, cluster: Cluster) -> Path:
        assert cluster.kubeconfig.path is not None
        return cluster.kubeconfig.path


@pytest.fixture(scope="module")
def inventory(downstream: list[BedCluster]) -> Iterator[Inventory]:
    found = Inventory(downstream)
    for bed in found.with_crd.values():
        kubectl(bed.kubeconfig, "apply", "-f", str(CRD))
        kubectl(bed.kubeconfig, "wait", "--for=condition=Established", f"crd/{RULES}",
                "--timeout=60s")  # fmt: skip
    yield found
    for bed in found.with_crd.values():
        kubectl(bed.kubeconfig, "delete", "-f", str(CRD), "--wait=false", check=False)


@pytest.fixture
async def env() -> AsyncIterator[HelmEnvironment]:
    helm = HelmEnvironment()
    yield helm
    helm.close()


def catalog(repo: str) -> AddonCatalog:
    data = {
        "neuvector.repo": repo,
        "observability.repo": repo,
        "neuvector.timeout": "2m",
        "neuvector.values": "controller:\n  replicas: 0\n",
    }
    return AddonCatalog.from_config(data, {"neuvector.password": "nv-" + uuid.uuid4().hex})


def stack_body(name: str, repo: str, security: object) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "security": security,
            "targets": {"selector": {"matchLabels": {"enforce": "e2e"}}},
            "charts": [
                {
                    "name": "web",
                    "repo": repo,
                    "chart": "app",
                    "version": "0.1.0",
                    "namespace": "enf-web",
                },
                {
                    "name": "api",
                    "repo": repo,
                    "chart": "app",
                    "version": "0.1.0",
                    "namespace": "enf-api",
                },
            ],
        },
    }


def local(bed: BedCluster) -> dict[str, Any] | None:
    """NeuVector's one admission-rule object of a cluster (`local`), or None."""
    out = kubectl(bed.kubeconfig, "get", RULES, "local", "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def stack_rules(bed: BedCluster, marker: str) -> list[dict[str, Any]]:
    found = local(bed) or {}
    rules = (found.get("spec") or {}).get("rules") or []
    return [r for r in rules if r.get("comment", "").startswith(f"{marker}: ")]


async def test_enforce_writes_the_rule_the_real_crd_accepts_and_removes_it(
    inventory: Inventory, env: HelmEnvironment, chart_repo_url: str
) -> None:
    name = "enforced-" + uuid.uuid4().hex[:6]
    engine = Engine(inventory, env, addons=catalog(chart_repo_url))
    enforced = {"enforce": True, "failOn": "Critical"}
    marker = rule_id("default", name)
    first, second = inventory.with_crd.values()
    # The cluster admin's own rule on the first cluster: Herd keeps it as it is.
    kubectl(first.kubeconfig, "apply", "-f", "-", stdin=json.dumps(ADMIN_LOCAL))
    try:
        result = await engine.apply(parse_stack(stack_body(name, chart_repo_url, enforced)))
        assert {r.state for r in result.releases} == {State.DEPLOYED}, result.releases
        # Without the CRD the write fails, said per cluster; the releases are not affected.
        assert list(result.enforcement) == ["c-m-enf3"]
        assert result.enforcement["c-m-enf3"].startswith(
            "cannot write NeuVector admission rule: HTTP 404"
        ), result.enforcement
        assert result.admission is not None
        assert (result.admission.rule, result.admission.fail_on) == (f"local/{marker}", "Critical")
        assert result.admission.namespaces == ["enf-api", "enf-web"]
        assert [p.cluster_id for p in result.admission.problems] == ["c-m-enf3"]
        for bed in (first, second):
            (denied,) = stack_rules(bed, marker)
            assert (denied["action"], denied["rule_mode"]) == ("deny", "protect")
            assert denied["criteria"] == [
                {"name": "namespace", "op": "containsAny", "value": "enf-api,enf-web"},
                {
                    "name": "cveScoreCount",
                    "op": ">=",
                    "value": "9",
                    "sub_criteria": [{"name": "count", "op": ">=", "value": "1"}],
                },
            ]
        assert (local(first) or {})["spec"]["rules"][0] == ADMIN_RULE

        # enforce off (NeuVector stays): the Stack's rule goes, the admin's stays.
        result = await engine.apply(parse_stack(stack_body(name, chart_repo_url, "enabled")))
        assert (result.enforcement, result.admission) == ({}, None)
        assert (local(first) or {})["spec"]["rules"] == [ADMIN_RULE]
        assert local(second) is None  # Herd's alone: the emptied object is deleted

        high = {"enforce": True}  # failOn defaults to High
        await engine.apply(parse_stack(stack_body(name, chart_repo_url, high)))
        for bed in (first, second):
            (denied,) = stack_rules(bed, marker)
            assert denied["criteria"][1] == {"name": "cveHighCount", "op": ">=", "value": "1"}
    finally:
        deleted = await engine.delete("default", name)
    assert deleted.enforcement == {}
    assert (local(first) or {})["spec"]["rules"] == [ADMIN_RULE]
    assert local(second) is None
    kubectl(first.kubeconfig, "delete", RULES, "local", check=False)


def test_the_real_crd_refuses_what_its_schema_does_not_allow(inventory: Inventory) -> None:
    bed = next(iter(inventory.with_crd.values()))
    bad = {
        "apiVersion": "neuvector.com/v1",
        "kind": "NvAdmissionControlSecurityRule",
        "metadata": {"name": "herd-e2e-invalid"},
        "spec": {"rules": [{"action": "block", "criteria": [{"name": "namespace"}]}]},
    }
    refused = kubectl_run(bed.kubeconfig, "create", "-f", "-", stdin=json.dumps(bad))
    assert refused.returncode != 0
    assert 'Unsupported value: "block"' in refused.stderr, refused.stderr
    assert "criteria[0].op: Required value" in refused.stderr, refused.stderr
    out = kubectl(bed.kubeconfig, "get", RULES, "herd-e2e-invalid", "--ignore-not-found")
    assert not out.strip()
