"""Staged rollouts through the real operator on three downstream control planes.

One Stack, driven only through kubectl, like a user would: a canary stage behind an
approval gate, then prod (two clusters, maxConcurrent 50%). The tests run in order on
that Stack: the approval gate and the percentage bound, a canary failure that halts the
rollout (prod's helm release Secrets prove it untouched), a soak pause, a spec change
during a soak, and suspend with drift (no helm write at all). Every helm call of the
controller goes through the HERD_HELM logging wrapper, which tells which cluster each
write went to (its --kubeconfig file is named after the cluster id).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.herd_controller import Controller, HelmCall
from e2e.testbed.operator_run import VENV_BIN, Operator, run_operator

FLEET_NS = "fleet-stg"
NS = "op-stages"
CANARY, PROD_A, PROD_B = "c-m-stg00001", "c-m-stg00002", "c-m-stg00003"
IDS = {"downstream-1": CANARY, "downstream-2": PROD_A, "downstream-3": PROD_B}
LABELS = {
    "downstream-1": {"team": "stg", "env": "canary"},
    "downstream-2": {"team": "stg", "env": "prod"},
    "downstream-3": {"team": "stg", "env": "prod"},
}
STACK = "staged"
APPROVE = "herd.suse.com/approve"
RESYNC = 60


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory: pytest.TempPathFactory) -> Controller:
    """Only its HERD_HELM wrapper and helm-call log are used (the operator runs below)."""
    directory = tmp_path_factory.mktemp("stages-helm")
    return Controller("stages", directory, directory / "unused", "default")


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
        tmp_path_factory.mktemp("stages-operator"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
        # A long resync: an approval must wake the controller itself, not wait for it.
        env={"HERD_HELM": str(wrapper.wrapper), "HERD_RESYNC_SECONDS": str(RESYNC)},
    ) as running:
        running.name = STACK
        yield running
        kubectl(management.kubeconfig, "delete", "stack", STACK, "-n", "default", check=False)


@pytest.fixture(scope="module")
def clusters(downstream: list[BedCluster]) -> dict[str, BedCluster]:
    return {IDS[c.name]: c for c in downstream}


def body(repo: str, message: str, *, pause: str = "approval", **spec: Any) -> dict[str, Any]:
    common = {"repo": repo, "version": "0.1.0", "namespace": NS, "chart": "app"}
    charts = [
        {"name": "db", **common},
        {"name": "api", **common, "dependsOn": ["db"], "values": {"inline": {"message": message}}},
    ]
    charts += spec.pop("extra_charts", [])
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": STACK, "namespace": "default"},
        "spec": {
            "targets": {"selector": {"matchLabels": {"team": "stg"}}},
            "rollout": {
                "stages": [
                    {"name": "canary", "clusterIds": [CANARY], "maxConcurrent": 1, "pause": pause},
                    {
                        "name": "prod",
                        "selector": {"matchLabels": {"env": "prod"}},
                        "maxConcurrent": "50%",
                    },
                ]
            },
            "charts": charts,
            **spec,
        },
    }


def rollout_in(operator: Operator, state: str, generation: int | None = None) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        stack = operator.stack()
        status = stack.get("status") or {}
        wanted = generation or stack.get("metadata", {}).get("generation")
        rollout = status.get("rollout") or {}
        if rollout.get("state") == state and status.get("observedGeneration") == wanted:
            return status
        return None

    return eventually(f"rollout {state}", probe, timeout=150)


def release_secrets(cluster: BedCluster) -> list[str]:
    """Names of helm's release Secrets in the test namespace (one per revision)."""
    out = kubectl(
        cluster.kubeconfig, "get", "secrets", "-n", NS, "-l", "owner=helm", "-o", "json",
        check=False,
    )  # fmt: skip
    return sorted(s["metadata"]["name"] for s in json.loads(out or '{"items": []}')["items"])


def writes(wrapper: Controller, since: float) -> dict[str, list[HelmCall]]:
    """The controller's mutating helm calls since `since`, per cluster id."""
    found: dict[str, list[HelmCall]] = {}
    for call in wrapper.helm_calls(since):
        if not call.mutating:
            continue
        where = next((a for a in call.args if a.startswith("--kubeconfig=")), "")
        cluster = next((c for c in (CANARY, PROD_A, PROD_B) if c in where), "?")
        found.setdefault(cluster, []).append(call)
    return found


def peak_in_flight(calls: dict[str, list[HelmCall]], clusters: list[str]) -> int:
    """Most of `clusters` whose write windows (first to last write) overlap at once."""
    windows = [(min(c.at for c in calls[k]), max(c.at for c in calls[k])) for k in clusters]
    return max(sum(start <= at <= end for start, end in windows) for at, _ in windows)


def annotate(operator: Operator, stage: str) -> None:
    kubectl(
        operator.management.kubeconfig,
        "annotate", "stack", STACK, "-n", "default", f"{APPROVE}={stage}", "--overwrite",
    )  # fmt: skip


def reasons(operator: Operator) -> set[str]:
    return {e.get("reason", "") for e in operator.events()}


def test_approval_gate_then_prod_at_fifty_percent(
    operator: Operator,
    clusters: dict[str, BedCluster],
    wrapper: Controller,
    chart_repo_url: str,
) -> None:
    since = time.time()
    operator.apply(body(chart_repo_url, "v1"))
    status = rollout_in(operator, "WaitingForApproval")
    assert status["rollout"]["stage"] == "canary", status["rollout"]
    assert len(release_secrets(clusters[CANARY])) == 2
    assert release_secrets(clusters[PROD_A]) == release_secrets(clusters[PROD_B]) == []
    waiting = [r for r in status["deployments"] if r["clusterId"] in (PROD_A, PROD_B)]
    assert waiting and all("waiting for approval of stage canary" in r["message"] for r in waiting)
    assert {c["type"]: c["status"] for c in status["conditions"]}["Stalled"] == "False"
    assert set(writes(wrapper, since)) == {CANARY}
    eventually("WaitingForApproval event", lambda: "WaitingForApproval" in reasons(operator))

    annotated = time.monotonic()
    annotate(operator, "canary")
    status = rollout_in(operator, "Complete")
    assert time.monotonic() - annotated < RESYNC / 2, "the approval did not wake the controller"
    assert status["phase"] == "Deployed"
    assert [(s["name"], s["done"], s["total"]) for s in status["rollout"]["stages"]] == [
        ("canary", 1, 1),
        ("prod", 2, 2),
    ]
    calls = writes(wrapper, since)
    assert set(calls) == {CANARY, PROD_A, PROD_B}
    # maxConcurrent 50% of two clusters: one prod cluster at a time, after the canary.
    assert peak_in_flight(calls, [PROD_A, PROD_B]) == 1, calls
    first_prod = min(c.at for k in (PROD_A, PROD_B) for c in calls[k])
    assert max(c.at for c in calls[CANARY]) < first_prod
    # The approval was used up: the annotation is gone, the next rollout waits again.
    annotations = operator.stack()["metadata"].get("annotations") or {}
    assert APPROVE not in annotations
    assert {"StageSucceeded", "StageStarted"} <= reasons(operator)


def test_canary_failure_halts_and_prod_stays_untouched(
    operator: Operator,
    clusters: dict[str, BedCluster],
    wrapper: Controller,
    chart_repo_url: str,
) -> None:
    before = {c: release_secrets(clusters[c]) for c in (PROD_A, PROD_B)}
    since = time.time()
    broken = {"name": "bad", "chart": "broken", "repo": chart_repo_url, "version": "0.1.0"}
    operator.apply(body(chart_repo_url, "v2", extra_charts=[{**broken, "namespace": NS}]))
    status = rollout_in(operator, "Halted")
    rollout = status["rollout"]
    assert rollout["stage"] == "canary"
    assert f"first failure: chart bad on cluster {CANARY}" in rollout["message"], rollout
    assert {c["type"]: c["status"] for c in status["conditions"]}["Stalled"] == "True"
    eventually("RolloutHalted event", lambda: "RolloutHalted" in reasons(operator))
    time.sleep(4)  # a retry pass more: still nothing on prod
    assert set(writes(wrapper, since)) <= {CANARY}
    assert {c: release_secrets(clusters[c]) for c in (PROD_A, PROD_B)} == before

    # The fixed spec (a new generation) resumes: canary is at v2 already, prod follows.
    operator.apply(body(chart_repo_url, "v2"))
    rollout_in(operator, "WaitingForApproval")
    approving = time.monotonic()
    approved = subprocess.run(
        [str(VENV_BIN / "herd"), "approve", STACK, "canary", "-n", "default",
         "--kubeconfig", str(operator.management.kubeconfig)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    rollout_in(operator, "Complete")
    # The same stage approved again (the first test's approval was used and removed) wakes
    # the controller too, not its next resync.
    assert time.monotonic() - approving < RESYNC / 2, "the approval did not wake the controller"
    for cluster in (PROD_A, PROD_B):
        assert len(release_secrets(clusters[cluster])) == len(before[cluster]) + 1


def test_soak_pause_then_a_spec_change_restarts_the_stages(
    operator: Operator,
    clusters: dict[str, BedCluster],
    wrapper: Controller,
    chart_repo_url: str,
) -> None:
    since = time.time()
    operator.apply(body(chart_repo_url, "v3", pause="5s"))
    paused = rollout_in(operator, "Paused")
    assert "soaking" in paused["rollout"]["message"]
    rollout_in(operator, "Complete")
    calls = writes(wrapper, since)
    canary_done = max(c.at for c in calls[CANARY])
    first_prod = min(c.at for k in (PROD_A, PROD_B) for c in calls[k])
    assert first_prod - canary_done >= 4.5, (canary_done, first_prod)

    # A spec change during a soak: the stages restart; prod never gets v4.
    before = {c: release_secrets(clusters[c]) for c in clusters}
    operator.apply(body(chart_repo_url, "v4", pause="8s"))
    rollout_in(operator, "Paused")
    # v5's own soak needs no margin: nothing happens during it.
    operator.apply(body(chart_repo_url, "v5", pause="1s"))
    rollout_in(operator, "Complete")
    after = {c: release_secrets(clusters[c]) for c in clusters}
    assert len(after[CANARY]) == len(before[CANARY]) + 2  # api at v4, then v5
    for cluster in (PROD_A, PROD_B):
        assert len(after[cluster]) == len(before[cluster]) + 1  # api at v5 only


def test_suspend_makes_no_helm_write_while_drift_exists(
    operator: Operator,
    clusters: dict[str, BedCluster],
    wrapper: Controller,
    chart_repo_url: str,
) -> None:
    before = {c: release_secrets(clusters[c]) for c in clusters}
    since = time.time()
    operator.apply(body(chart_repo_url, "v6", pause="1s", suspend=True))
    status = rollout_in(operator, "Suspended")
    rows = [r for r in status["deployments"] if r["chartName"] == "api"]
    assert rows and all("suspended" in r["message"] for r in rows), rows
    # Another edit, still suspended: one more pass over the drift, still no write.
    operator.apply(body(chart_repo_url, "v7", pause="1s", suspend=True))
    rollout_in(operator, "Suspended")
    time.sleep(3)
    assert writes(wrapper, since) == {}
    assert {c: release_secrets(clusters[c]) for c in clusters} == before

    operator.apply(body(chart_repo_url, "v7", pause="1s"))
    rollout_in(operator, "Complete")
    assert set(writes(wrapper, since)) == {CANARY, PROD_A, PROD_B}


def test_reconcile_at_retries_a_held_failure_without_waiting_for_a_resync(
    operator: Operator, wrapper: Controller, chart_repo_url: str
) -> None:
    """kopf's diff ignores our group's annotations, so herd.suse.com/reconcile-at is
    watched raw like the approval: a new value wakes the keeper, not the next resync."""
    broken = {"name": "bad", "chart": "broken", "repo": chart_repo_url, "version": "0.1.0"}
    spec = body(chart_repo_url, "v7", extra_charts=[{**broken, "namespace": NS}])
    del spec["spec"]["rollout"]  # every cluster at once: the failure is held everywhere

    def bad_attempts(since: float) -> list[HelmCall]:
        # any helm call for it: a tenant's release fails in the render check (helm template)
        calls = wrapper.helm_calls(since)
        return [c for c in calls if "bad" in c.args and c.verb in ("template", "upgrade")]

    def held_everywhere() -> bool:
        rows = operator.status().get("deployments", [])
        return len([r for r in rows if r["chartName"] == "bad" and r.get("failedConfig")]) == 3

    operator.apply(spec)
    eventually("bad held on every cluster", held_everywhere, timeout=150)
    time.sleep(3)  # any pass that was under way ends
    since = time.time()
    kubectl(
        operator.management.kubeconfig,
        "annotate", "stack", STACK, "-n", "default",
        f"herd.suse.com/reconcile-at={time.time()}", "--overwrite",
    )  # fmt: skip
    eventually("a new attempt of bad", lambda: bad_attempts(since), timeout=RESYNC / 3)
