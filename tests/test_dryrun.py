"""`spec.mode: DryRun` status: preview rows → Planned rows, message, phase and conditions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herd.api import SkippedCluster, StackSpec
from herd.names import LABEL_CHART, LABEL_STACK, LABEL_VERSION
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.decide import Action, Decision
from herd.plan.desired import plan_stack
from herd.plan.releases import ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.dryrun import DRY_RUN, dry_run_status, message, planned, summary, unreachable_rows

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = StackSpec.model_validate(
    {
        "targets": {"clusterIds": ["c1"]},
        "charts": [
            {
                "name": "app",
                "repo": "https://r",
                "version": "2.0.0",
                "values": {"inline": {"password": "s3cret"}},
            }
        ],
    }
)
DESIRED = plan_stack(SPEC).releases_for("c1")[0]
OBSERVED = ObservedRelease(
    "default",
    "app",
    "deployed",
    4,
    {LABEL_STACK: "default.s", LABEL_CHART: "app", LABEL_VERSION: "1.0.0"},
)


@pytest.mark.parametrize(
    ("action", "reason", "expected"),
    [
        (Action.INSTALL, "not installed", "would install version 2.0.0: not installed"),
        (
            Action.UPGRADE,
            "chart version 1.0.0 -> 2.0.0",
            "would upgrade: chart version 1.0.0 -> 2.0.0",
        ),
        (
            Action.UPGRADE,
            "values or chart source changed",
            "would upgrade version 2.0.0: values or chart source changed",
        ),
        (Action.NOTHING, "up to date", "up to date"),
        (
            Action.CONFLICT,
            "release default/app is managed by x",
            "release default/app is managed by x",
        ),
    ],
)
def test_messages_say_what_apply_would_do(action: Action, reason: str, expected: str) -> None:
    assert message(DESIRED, OBSERVED, Decision(action, reason)) == expected


def test_uninstall_row_comes_from_the_observed_release() -> None:
    key = ReleaseKey("c2", "default", "app")
    row = planned(key, None, OBSERVED, Decision(Action.UNINSTALL, "no longer in the Stack"))
    assert (row.chart, row.state, row.action, row.revision, row.chart_version) == (
        "app",
        State.PLANNED,
        Action.UNINSTALL,
        4,
        "1.0.0",
    )
    assert row.message == "would uninstall: no longer in the Stack"


def status_of(
    results: list[ReleaseResult], skipped: list[SkippedCluster] | None = None
) -> dict[str, tuple[str, str]]:
    status = dry_run_status(
        results,
        targets=["c1"],
        skipped=skipped or [],
        chart_count=1,
        generation=3,
        now=NOW,
        previous=None,
        max_rows=10,
        reconcile_at=None,
    )
    assert status.phase == DRY_RUN
    assert not any("s3cret" in r.message for r in status.deployments)  # no values in rows
    return {c.type: (c.status, c.reason) for c in status.conditions}


def row(action: Action) -> ReleaseResult:
    return planned(DESIRED.key, DESIRED, OBSERVED, Decision(action, "why"))


def test_changes_pending_is_neither_ready_nor_stalled() -> None:
    assert status_of([row(Action.UPGRADE), row(Action.NOTHING)]) == {
        "Ready": ("False", DRY_RUN),
        "Reconciling": ("False", DRY_RUN),
        "Stalled": ("False", DRY_RUN),
    }


def test_nothing_to_change_is_ready() -> None:
    assert status_of([row(Action.NOTHING)])["Ready"] == ("True", DRY_RUN)


@pytest.mark.parametrize("action", [Action.CONFLICT, Action.INVALID, Action.HELD])
def test_what_apply_could_not_do_is_stalled(action: Action) -> None:
    conditions = status_of([row(Action.INSTALL), row(action)])
    assert conditions["Stalled"] == ("True", DRY_RUN)
    assert conditions["Ready"] == ("False", DRY_RUN)


def test_unreachable_and_skipped_clusters_are_stalled() -> None:
    c1 = Cluster("c1", "one", {}, True, "file", KubeconfigRef())
    plan = plan_stack(SPEC, clusters=[c1])
    rows = unreachable_rows(plan, {"c1": "connection refused", "gone": "departed"})
    assert [(r.key.cluster, r.state, r.message) for r in rows] == [
        ("c1", State.UNREACHABLE, "connection refused")
    ]
    assert status_of([*rows, row(Action.NOTHING)])["Stalled"] == ("True", DRY_RUN)
    skipped = [SkippedCluster(cluster_id="c9", reason="not ready")]
    assert status_of([row(Action.NOTHING)], skipped)["Stalled"] == ("True", DRY_RUN)


def test_summary_counts_actions() -> None:
    rows = [row(Action.INSTALL), row(Action.INSTALL), row(Action.CONFLICT), row(Action.NOTHING)]
    assert summary(rows, []) == (
        "Dry run (nothing written): 2 to install, 1 conflict, 1 unchanged on 1 clusters"
    )
