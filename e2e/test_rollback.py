"""Fleet rollback through the real operator on three downstream control planes.

One tenant Stack (in `default`, bounded by the test's ClusterGrant: its helm runs as
`system:serviceaccount:herd-tenants:tenant-default`), a chain of charts db <- api <- web,
three stages: first (one cluster), canary (one), prod (one). Generation 1 rolls out
everywhere. Generation 2 moves db to chart 0.2.0, api to new values, and gives web a CPU
request from a cluster label, with `--wait`: the canary's label asks for more CPU than its
nodes have, so web's upgrade times out there and the canary stage fails.

- `onFailure: Rollback` (scope Stage): the canary returns to chart 0.1.0 and the old values,
  web first, then api, then db (the helm-call log and `helm history` on the downstream
  cluster say so); first stays on generation 2, prod is untouched; the rollout stays
  Halted, writing nothing, until the spec changes.
- `scope: Rollout` (a new generation): first is rolled back too.
- Every rollback ran as the tenant (`--kube-as-user` of each `helm rollback`), and
  `herd.suse.com/approve=canary` retries the stage.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from e2e.test_stages import rollout_in
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.faults import helm_json, history
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.herd_controller import Controller, HelmCall
from e2e.testbed.operator_run import CONTROLLER_NS, Operator, run_operator

FLEET_NS = "fleet-rb"
NS = "op-rollback"
FIRST, CANARY, PROD = "c-m-rb000001", "c-m-rb000002", "c-m-rb000003"
IDS = {"downstream-1": FIRST, "downstream-2": CANARY, "downstream-3": PROD}
# The canary's web asks for 64 CPUs; a test-bed node has 32: its pod never schedules.
LABELS = {
    "downstream-1": {"team": "rb", "webcpu": "10m"},
    "downstream-2": {"team": "rb", "webcpu": "64"},
    "downstream-3": {"team": "rb", "webcpu": "10m"},
}
STACK = "rollback"
TENANT = "--kube-as-user=system:serviceaccount:herd-tenants:tenant-default"
CHAIN = ("web", "api", "db")  # the reverse of the dependency order
RESYNC = 3  # seconds between the passes of a held rollout
# web's `--wait` bound: its failure on the canary is certain (the pod never schedules), and
# its success elsewhere takes ~2 s on the loaded bed (kwok readies pods at once).
WEB_TIMEOUT = "10s"


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory: pytest.TempPathFactory) -> Controller:
    directory = tmp_path_factory.mktemp("rollback-helm")
    return Controller("rollback", directory, directory / "unused", "default")


@pytest.fixture(scope="module")
def operator(
    management: BedCluster,
    downstream: list[BedCluster],
    wrapper: Controller,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    with run_operator(
        management,
        downstream,
        tmp_path_factory.mktemp("rollback-operator"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
        env={"HERD_HELM": str(wrapper.wrapper), "HERD_RESYNC_SECONDS": str(RESYNC)},
    ) as running:
        running.name = STACK
        yield running
        kubectl(management.kubeconfig, "delete", "stack", STACK, "-n", "default", check=False)


@pytest.fixture(scope="module")
def clusters(downstream: list[BedCluster]) -> dict[str, BedCluster]:
    return {IDS[c.name]: c for c in downstream}


def body(repo: str, generation: int, **rollout: Any) -> dict[str, Any]:
    common = {"repo": repo, "namespace": NS, "chart": "app"}
    web: dict[str, Any] = {"inline": {"message": f"web v{generation}"}}
    if generation > 1:
        cpu = {"resources": {"requests": {"cpu": "{{ .Cluster.labels.webcpu }}"}}}
        web = {"templated": True, "inline": {**web["inline"], **cpu}}
    charts = [
        {"name": "db", **common, "version": "0.2.0" if generation > 1 else "0.1.0"},
        {
            "name": "api",
            **common,
            "version": "0.1.0",
            "dependsOn": ["db"],
            "values": {"inline": {"message": "api v2" if generation > 1 else "api v1"}},
        },
        {
            "name": "web",
            **common,
            "version": "0.1.0",
            "dependsOn": ["api"],
            "values": web,
            "wait": True,
            "timeout": WEB_TIMEOUT,
        },
    ]
    stages = [{"name": n, "clusterIds": [c]} for n, c in (("first", FIRST), ("canary", CANARY))]
    stages.append({"name": "prod", "clusterIds": [PROD]})
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": STACK, "namespace": "default"},
        "spec": {
            "targets": {"selector": {"matchLabels": {"team": "rb"}}},
            "rollout": {"stages": stages, "onFailure": "Rollback", **rollout},
            "charts": charts,
        },
    }


def latest(cluster: BedCluster, release: str) -> dict[str, Any]:
    return history(cluster.kubeconfig, NS, release)[-1]


def message_of(cluster: BedCluster, release: str) -> str:
    values = helm_json(cluster.kubeconfig, "get", "values", release, "-n", NS) or {}
    return str(values.get("message"))


def rollbacks(wrapper: Controller, since: float, cluster: str) -> list[HelmCall]:
    calls = wrapper.helm_calls(since)
    return [c for c in calls if c.verb == "rollback" and any(cluster in a for a in c.args)]


def released(call: HelmCall) -> str:
    """The release a `helm rollback` call names (after `--`: release, revision)."""
    return call.args[call.args.index("--") + 1]


def updated(row: dict[str, Any]) -> float:
    """helm history's `updated` as epoch seconds (nanoseconds cut to microseconds)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(row["updated"])).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def assert_rolled_back(cluster: BedCluster, calls: list[HelmCall]) -> None:
    """Reverse dependency order, as the tenant; each release back at 0.1.0 and v1 values."""
    assert [released(c) for c in calls] == list(CHAIN), [c.args for c in calls]
    assert all(TENANT in c.args for c in calls), [c.args for c in calls]
    rows = {name: latest(cluster, name) for name in CHAIN}
    for name, row in rows.items():
        assert row["status"] == "deployed", (name, row)
        assert row["chart"] == "app-0.1.0", (name, row)
        assert "Rollback to 1" in row["description"], (name, row)
    assert updated(rows["web"]) <= updated(rows["api"]) <= updated(rows["db"]), rows
    assert message_of(cluster, "api") == "api v1"
    assert message_of(cluster, "web") == "web v1"


def test_canary_failure_rolls_the_canary_back_in_reverse_order(
    operator: Operator, clusters: dict[str, BedCluster], wrapper: Controller, chart_repo_url: str
) -> None:
    operator.apply(body(chart_repo_url, 1))
    rollout_in(operator, "Complete")
    prod_before = history(clusters[PROD].kubeconfig, NS, "db")

    since = time.time()
    operator.apply(body(chart_repo_url, 2))
    status = rollout_in(operator, "Halted")
    rollback = status["rollout"]["rollback"]
    assert (rollback["stage"], rollback["scope"]) == ("canary", "Stage"), rollback
    assert [(c["clusterId"], c["state"]) for c in rollback["clusters"]] == [(CANARY, "RolledBack")]
    assert "approves a retry" in status["rollout"]["message"]
    assert_rolled_back(clusters[CANARY], rollbacks(wrapper, since, CANARY))
    said = [c["message"] for c in rollback["clusters"]]
    assert "db: rolled back to revision 1 (chart 0.1.0, generation 1)" in said[0], said
    # first stays on generation 2 (scope Stage); prod was never reached.
    assert latest(clusters[FIRST], "db")["chart"] == "app-0.2.0"
    assert history(clusters[PROD].kubeconfig, NS, "db") == prod_before
    assert all(len(history(clusters[PROD].kubeconfig, NS, n)) == 1 for n in CHAIN)
    # Held: more passes (two resyncs at least) write nothing anywhere.
    held = time.time()
    time.sleep(2 * RESYNC + 1)
    assert [c.args for c in wrapper.helm_calls(held) if c.mutating] == []
    assert rollout_in(operator, "Halted")["rollout"]["rollback"]["at"] == rollback["at"]
    events = operator.events()
    assert {"RolledBack", "RolloutHalted"} <= {e.get("reason") for e in events}
    rolled = [e for e in events if e.get("reason") == "RolledBack"]
    assert len(rolled) == 1 and CANARY in rolled[0]["message"], rolled  # once, not per pass


def test_scope_rollout_also_rolls_back_the_stage_already_moved(
    operator: Operator, clusters: dict[str, BedCluster], wrapper: Controller, chart_repo_url: str
) -> None:
    prod_before = {n: history(clusters[PROD].kubeconfig, NS, n) for n in CHAIN}
    since = time.time()
    operator.apply(body(chart_repo_url, 2, scope="Rollout"))  # a new generation: a new try

    def rolled_again() -> dict[str, Any] | None:
        status = rollout_in(operator, "Halted")
        rollback = status["rollout"].get("rollback") or {}
        return status if rollback.get("scope") == "Rollout" else None

    status = eventually("a Rollout-scoped rollback", rolled_again, timeout=240)
    states = {c["clusterId"]: c["state"] for c in status["rollout"]["rollback"]["clusters"]}
    assert states == {FIRST: "RolledBack", CANARY: "RolledBack"}, states
    # first had moved to generation 2 and passed: back to generation 1 too.
    assert_rolled_back(clusters[FIRST], rollbacks(wrapper, since, FIRST))
    canary = rollbacks(wrapper, since, CANARY)
    assert [released(c) for c in canary] == list(CHAIN)
    assert {n: history(clusters[PROD].kubeconfig, NS, n) for n in CHAIN} == prod_before

    # The existing approval annotation asks for a retry of the failed stage.
    retried = time.time()
    kubectl(
        operator.management.kubeconfig,
        "annotate", "stack", STACK, "-n", "default", "herd.suse.com/approve=canary", "--overwrite",
    )  # fmt: skip
    eventually(
        "the canary retried and rolled back again",
        lambda: len(rollbacks(wrapper, retried, CANARY)) == len(CHAIN),
        timeout=240,
    )
    # The approval was used up: the keeper removes it after the pass.
    eventually(
        "the approval removed",
        lambda: (
            "herd.suse.com/approve" not in (operator.stack()["metadata"].get("annotations") or {})
        ),
    )
    status = rollout_in(operator, "Halted")
    assert status["rollout"]["rollback"]["scope"] == "Rollout"


def test_the_record_is_kept_on_the_management_side_and_deleted_with_the_stack(
    operator: Operator, clusters: dict[str, BedCluster]
) -> None:
    uid = operator.stack()["metadata"]["uid"]
    name = f"herd-lastgood-{uid}"
    management = operator.management.kubeconfig
    found = json.loads(
        kubectl(management, "get", "configmap", name, "-n", CONTROLLER_NS, "-o", "json")
    )
    record = json.loads(found["data"]["lastGood"])["releases"]
    # prod passed at generation 1 only; first passed at 1 and at the generation that moved it.
    assert [e[1] for e in record[PROD]["op-rollback/db"]] == ["0.1.0"]
    assert [e[1] for e in record[FIRST]["op-rollback/db"]] == ["0.2.0", "0.1.0"]
    revision = record[CANARY]["op-rollback/api"][0][3]
    assert revision == 1, record[CANARY]  # Herd's own revision, not the rollback's copy
    # Nothing downstream holds it (the operator keeps no record there).
    for cluster in clusters.values():
        found = kubectl(
            cluster.kubeconfig, "get", "configmap", name, "-n", CONTROLLER_NS, "--ignore-not-found"
        )
        assert not found, cluster.name

    kubectl(management, "delete", "stack", STACK, "-n", "default", "--wait=true")
    eventually(
        "the last good record deleted",
        lambda: (
            not kubectl(
                management, "get", "configmap", name, "-n", CONTROLLER_NS, "--ignore-not-found"
            )
        ),
    )
