"""The operator end to end: `herd operator` as a process, driven only through kubectl.

The controller runs with the install/ ServiceAccount's own token (a real identity, so
its RBAC is what is tested), against a Rancher-shaped management cluster whose
provisioning Clusters point at the test bed's downstream clusters. The tests run in
order on one Stack, like a user would: apply, watch, edit, break, repair, delete.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import outage, rancher
from e2e.testbed.chartrepo import helm_binary
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, get_stack, kubectl
from e2e.testbed.operator_run import STACK, Operator, helm_releases, run_operator

FLEET_NS = "fleet-op"  # the operator's Rancher namespace here (other tests use fleet-default)
IDS = {
    "downstream-1": "c-m-op000001",
    "downstream-2": "c-m-op000002",
    "downstream-3": "c-m-op000003",
}
LABELS = {
    "downstream-1": {"team": "op", "gpu": "true"},
    "downstream-2": {"team": "op"},
    "downstream-3": {"team": "other"},
}


def stack_body(namespace: str, charts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": STACK, "namespace": "default"},
        "spec": {
            "env": "test",
            "targets": {"selector": {"matchLabels": {"team": "op"}}},
            "charts": charts,
        },
    }


def charts(repo: str, namespace: str, message: str = "v1") -> list[dict[str, Any]]:
    common = {
        "repo": repo,
        "version": "0.1.0",
        "namespace": namespace,
        "wait": True,
        "timeout": "1m",
        "chart": "app",
    }
    return [
        {"name": "db", **common},
        {"name": "api", **common, "dependsOn": ["db"], "values": {"inline": {"message": message}}},
        {"name": "ui", **common, "dependsOn": ["api"]},
    ]


@pytest.fixture(scope="module")
def operator(
    management: BedCluster, downstream: list[BedCluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    with run_operator(
        management,
        downstream,
        tmp_path_factory.mktemp("operator"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
        # A pass every 3 s (10 s by default): the drift test waits for one to repair.
        env={"HERD_RESYNC_SECONDS": "3"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def targets(downstream: list[BedCluster]) -> list[BedCluster]:
    return [c for c in downstream if LABELS[c.name]["team"] == "op"]


NS = "op-apps"


@pytest.mark.helm3
def test_apply_deploys_with_living_status(
    operator: Operator, targets: list[BedCluster], chart_repo_url: str
) -> None:
    operator.apply(stack_body(NS, charts(chart_repo_url, NS)))
    seen = set()

    def deployed() -> dict[str, Any] | None:
        status = operator.status()
        seen.add(status.get("phase"))
        return status if status.get("phase") == "Deployed" else None

    status = eventually("Deployed", deployed)
    assert "Deploying" in seen, f"status was not written during the rollout: {seen}"
    assert status["clusterCount"] == 2 and status["chartCount"] == 3
    assert sorted(status["targetClusters"]) == ["c-m-op000001", "c-m-op000002"]
    assert status["releaseClusters"] == ["c-m-op000001", "c-m-op000002"]
    assert status["releaseClusterCount"] == 2
    rows = {(r["clusterId"], r["chartName"]): r for r in status["deployments"]}
    assert len(rows) == 6
    assert {r["status"] for r in rows.values()} == {"Deployed"}
    assert {r["revision"] for r in rows.values()} == {1}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "DeploymentSucceeded")
    table = kubectl(operator.management.kubeconfig, "get", "stacks", "-n", "default")
    lines = [row.split() for row in table.splitlines()]
    header, line = lines[0], next(row for row in lines if row[0] == STACK)
    assert header == [
        "NAME",
        "PHASE",
        "CLUSTERS",
        "CHARTS",
        "STAGE",
        "DRIFTED",
        "AGE",
    ]  # no rollout
    assert line[:4] == [STACK, "Deployed", "2", "3"]
    messages = [e["message"] for e in operator.events()]
    assert any(m.startswith("Installed chart db") and "c-m-op000001" in m for m in messages), (
        kubectl(operator.management.kubeconfig, "get", "events", "-A")
        + operator.log.read_text()[-3000:]
    )
    for cluster in targets:
        assert set(helm_releases(cluster, NS)) == {"db", "api", "ui"}
    kubectl(
        operator.management.kubeconfig,
        "wait",
        "--for=condition=Ready",
        f"stack/{STACK}",
        "-n",
        "default",
        "--timeout=10s",
    )


@pytest.mark.helm3
def test_update_upgrades_only_what_changed(
    operator: Operator, targets: list[BedCluster], chart_repo_url: str
) -> None:
    operator.apply(stack_body(NS, charts(chart_repo_url, NS, message="v2")))
    status = operator.settled("Deployed")
    revisions = {(r["clusterId"], r["chartName"]): r["revision"] for r in status["deployments"]}
    assert {k[1]: v for k, v in revisions.items() if v == 2} == {"api": 2}
    assert sum(v == 2 for v in revisions.values()) == 2


def test_failing_chart_degrades_the_stack(operator: Operator, chart_repo_url: str) -> None:
    broken = {
        "name": "broken",
        "chart": "broken",
        "repo": chart_repo_url,
        "version": "0.1.0",
        "namespace": NS,
    }
    operator.apply(stack_body(NS, [*charts(chart_repo_url, NS, message="v2"), broken]))
    status = operator.settled("Degraded")
    failed = [r for r in status["deployments"] if r["status"] == "Failed"]
    assert len(failed) == 2 and all("broken.mustSet is required" in r["message"] for r in failed)
    assert status["deployments"][0]["status"] == "Failed", "failing rows come first"
    assert {r["status"] for r in status["deployments"][2:]} == {"Deployed"}
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    warnings = [e for e in operator.events() if e["type"] == "Warning"]
    assert any("broken" in e["message"] and "c-m-op00000" in e["message"] for e in warnings)
    operator.apply(stack_body(NS, charts(chart_repo_url, NS, message="v2")))
    operator.settled("Deployed")


def test_drift_is_repaired(operator: Operator, targets: list[BedCluster]) -> None:
    subprocess.run(
        [
            helm_binary(),
            "--kubeconfig",
            str(targets[0].kubeconfig),
            "uninstall",
            "ui",
            "-n",
            NS,
        ],
        check=True,
        capture_output=True,
    )
    eventually("ui reinstalled", lambda: "ui" in helm_releases(targets[0], NS), 60)


def test_relabelled_cluster_joins_and_leaves(
    operator: Operator, downstream: list[BedCluster]
) -> None:
    third = downstream[2]
    mgmt = operator.management.kubeconfig
    rancher.set_labels(mgmt, "op-downstream-3", {"team": "op"}, namespace=FLEET_NS)
    eventually(
        "the third cluster deployed",
        lambda: (
            len(helm_releases(third, NS)) == 3
            and operator.status().get("phase") == "Deployed"
            and operator.status().get("clusterCount") == 3
        ),
    )
    rancher.set_labels(mgmt, "op-downstream-3", {"team": "other"}, namespace=FLEET_NS)
    eventually("the third cluster cleaned", lambda: helm_releases(third, NS) == {})
    status = operator.settled("Deployed")
    assert status["clusterCount"] == 2
    eventually(
        "the third cluster off the release record",
        lambda: IDS["downstream-3"] not in operator.status().get("releaseClusters", ["?"]),
        30,
    )


def test_a_cluster_that_is_not_ready_keeps_its_releases(
    operator: Operator, targets: list[BedCluster]
) -> None:
    mgmt, name, cluster_id = operator.management.kubeconfig, "op-downstream-2", IDS["downstream-2"]
    rancher.set_ready(mgmt, name, False, namespace=FLEET_NS)
    try:
        status = operator.settled("Degraded")
        assert [s["clusterId"] for s in status["skippedClusters"]] == [cluster_id]
        assert "not ready" in status["skippedClusters"][0]["reason"]
        assert set(helm_releases(targets[1], NS)) == {"db", "api", "ui"}
    finally:
        rancher.set_ready(mgmt, name, True, namespace=FLEET_NS)
    operator.settled("Deployed")


def test_unreachable_cluster_is_reported_and_converges(
    operator: Operator, targets: list[BedCluster], chart_repo_url: str
) -> None:
    down = targets[1]
    outage.stop_apiserver(down)
    try:
        operator.apply(stack_body(NS, charts(chart_repo_url, NS, message="v3")))

        def unreachable_rows() -> list[dict[str, Any]] | None:
            rows = [
                r
                for r in operator.status().get("deployments", [])
                if r["clusterId"] == IDS[down.name] and r["status"] == "Unreachable"
            ]
            return rows or None

        rows = eventually("rows of the stopped cluster to say Unreachable", unreachable_rows)
        assert all(r["message"] for r in rows)
        eventually(
            "the live cluster upgraded",
            lambda: int(helm_releases(targets[0], NS)["api"]["revision"]) == 3,
        )
    finally:
        down.start_apiserver()
    status = operator.settled("Deployed")
    assert {r["status"] for r in status["deployments"]} == {"Deployed"}
    assert int(helm_releases(down, NS)["api"]["revision"]) == 3


def test_metrics_are_served(operator: Operator) -> None:
    text = operator.metrics()
    assert 'herd_operations_total{chart="db",cluster="c-m-op000001",operation="install"' in text
    assert 'herd_stacks{phase="Deployed"} 1.0' in text
    assert "herd_helm_duration_seconds_bucket" in text


def test_no_secret_material_in_logs_status_or_events(
    operator: Operator, downstream: list[BedCluster]
) -> None:
    secrets = []
    for cluster in downstream:
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        for user in config["users"]:
            secrets += [v for k, v in user["user"].items() if k in ("client-key-data", "token")]
    token = yaml.safe_load((operator.log.parent / "controller.yaml").read_text())["users"][0]
    secrets.append(token["user"]["token"])
    assert secrets
    haystacks = {
        "log": operator.log.read_text(),
        "stack": json.dumps(operator.stack()),
        "events": json.dumps(operator.events()),
    }
    for name, text in haystacks.items():
        for secret in secrets:
            assert secret[20:60] not in text, f"secret material in the {name}"


@pytest.mark.helm3
def test_delete_removes_every_release_then_the_stack(
    operator: Operator, targets: list[BedCluster]
) -> None:
    kubectl(
        operator.management.kubeconfig, "delete", "stack", STACK, "-n", "default", "--timeout=120s"
    )
    assert operator.stack() == {}
    for cluster in targets:
        assert helm_releases(cluster, NS) == {}


def allow_values_from_default(mgmt: Path) -> None:
    """values.from is read as the Stack's ServiceAccount: `op-values` may get Secrets in
    `default`."""
    kubectl(mgmt, "create", "serviceaccount", "op-values", "-n", "default", check=False)
    kubectl(mgmt, "create", "role", "op-values", "-n", "default", "--verb=get",
            "--resource=secrets", check=False)  # fmt: skip
    kubectl(mgmt, "create", "rolebinding", "op-values", "-n", "default", "--role=op-values",
            "--serviceaccount=default:op-values", check=False)  # fmt: skip


def invalid_stack(name: str, namespace: str, repo: str) -> dict[str, Any]:
    """A cycle a -> b -> a, and c's values from a Secret that does not exist."""
    common = {"chart": "app", "repo": repo, "version": "0.1.0", "namespace": namespace}
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "serviceAccountName": "op-values",
            "targets": {"selector": {"matchLabels": {"team": "op"}}},
            "charts": [
                {"name": "a", **common, "dependsOn": ["b"]},
                {"name": "b", **common, "dependsOn": ["a"]},
                {"name": "c", **common, "values": {"from": [{"kind": "Secret", "name": "nope"}]}},
            ],
        },
    }


def assert_every_problem_said(mgmt: Path, name: str, status: dict[str, Any]) -> None:
    """Every problem at once, each naming its field; Stalled, and an InvalidSpec Event."""
    assert "spec.charts[0].dependsOn: dependency cycle a -> b -> a" in status["message"]
    assert "spec.charts[2].values.from[0]: Secret default/nope not found" in status["message"]
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    events = json.loads(
        kubectl(
            mgmt,
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        )
    )["items"]
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)


def test_invalid_stack_fails_without_any_helm_call(
    operator: Operator, targets: list[BedCluster], chart_repo_url: str
) -> None:
    """Errors the API server cannot see (a cycle, a missing values Secret) make the Stack
    Failed with the field named; nothing is deployed and nothing is retried in a loop."""
    mgmt = operator.management.kubeconfig
    name, namespace = "op-invalid", "op-invalid"
    allow_values_from_default(mgmt)
    body = invalid_stack(name, namespace, chart_repo_url)
    kubectl(mgmt, "apply", "-f", "-", stdin=yaml.safe_dump(body))

    def failed() -> dict[str, Any] | None:
        status: dict[str, Any] = get_stack(mgmt, "default", name).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = eventually("the invalid Stack to be Failed", failed, 60)
    assert_every_problem_said(mgmt, name, status)
    for cluster in targets:
        assert helm_releases(cluster, namespace) == {}
    # The cycle fixed, the missing Secret is what remains.
    body["spec"]["charts"][0]["dependsOn"] = []
    kubectl(mgmt, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    status = eventually(
        "the second generation judged",
        lambda: (s := failed()) and s.get("observedGeneration") == 2 and s,
        60,
    )
    assert status["message"] == "spec.charts[2].values.from[0]: Secret default/nope not found"
    assert all(helm_releases(cluster, namespace) == {} for cluster in targets)
    kubectl(mgmt, "delete", "stack", name, "-n", "default", "--timeout=60s")
