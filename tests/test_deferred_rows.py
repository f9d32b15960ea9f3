"""A cluster in its backoff is not contacted: its rows say what its failed pass said.

The rollout with no helm at all (a deferred cluster never reaches helm): a repo failure
stays a Failed row naming the repo, with its retry; Unreachable only for a cluster that
did not answer; a release the failed pass did not see waits for the retry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from herd.api import StackSpec
from herd.helm.environment import HelmEnvironment
from herd.plan.desired import StackPlan, plan_stack
from herd.plan.results import ReleaseResult, State
from herd.plan.retry import Deferral
from herd.rollout.actions import Settings
from herd.rollout.scheduler import Rollout
from herd.rollout.target import Target

REPO_DOWN = 'Get "http://127.0.0.1:9/charts/index.yaml": dial tcp: connection refused'


def _plan() -> tuple[StackPlan, list[Target]]:
    spec = StackSpec.model_validate(
        {
            "targets": {"clusterIds": ["a", "b", "c"]},
            "charts": [
                {"name": "db", "repo": "https://r", "version": "1.0.0", "namespace": "apps"},
                {"name": "ui", "repo": "https://r", "version": "1.0.0", "namespace": "apps"},
            ],
        }
    )
    targets = [Target(c, Path("/nonexistent")) for c in ("a", "b", "c")]
    return plan_stack(spec), targets


def test_deferred_rows_name_the_real_cause() -> None:
    plan, targets = _plan()
    db_a = next(r for r in plan.releases_for("a") if r.chart.name == "db")
    failed = ReleaseResult(
        db_a.key, "db", State.FAILED, message=REPO_DOWN, transient=True, config=db_a.attempt
    )
    defer = {
        "a": Deferral(37.2, rows=(failed,)),
        "b": Deferral(12.0, why="dial tcp 127.0.0.1:6443: connection refused"),
        "c": Deferral(5.0, rows=()),
    }
    rollout = Rollout(HelmEnvironment(), Settings(owner="ns.app"), defer=defer)
    done = asyncio.run(rollout.apply(plan, targets))
    rows = {(r.key.cluster, r.chart): r for r in done}

    assert rows["a", "db"].state is State.FAILED and rows["a", "db"].transient
    assert rows["a", "db"].message == f"retrying in 38s: {REPO_DOWN}"
    assert rows["a", "ui"].state is State.PENDING  # not seen by the failed pass
    assert rows["a", "ui"].message == f"waiting for the cluster, retrying in 38s: {REPO_DOWN}"
    assert "a" not in rollout.unreachable and "c" not in rollout.unreachable
    for chart in ("db", "ui"):
        assert rows["b", chart].state is State.UNREACHABLE
        assert (
            rows["b", chart].message
            == "retrying in 12s: dial tcp 127.0.0.1:6443: connection refused"
        )
        assert rows["c", chart].state is State.PENDING
    assert set(rollout.unreachable) == {"b"}
    assert rollout.holding >= {"a", "b", "c"}  # not read this pass: they may hold releases
