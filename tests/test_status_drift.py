"""The drift parts of the status through `herd.status.pipeline.compose`: a row's `drift`,
`driftedObjects`, the `Drifted` condition, and what a write without checks keeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from herd.api.status import StackStatus
from herd.plan.decide import Action
from herd.plan.drift import ObjectDrift, ObjectRef, ReleaseDrift
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.pipeline import Kind, Rows, StatusInputs, compose

NOW = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
DEPLOY = ObjectRef("apps/v1", "Deployment", "apps", "web")
SERVICE = ObjectRef("v1", "Service", "apps", "web")


def result(drift: ReleaseDrift | None, name: str = "web") -> ReleaseResult:
    key = ReleaseKey("c1", "apps", name)
    return ReleaseResult(
        key, name, State.DEPLOYED, action=Action.NOTHING, revision=1, updated=NOW, drift=drift
    )


def final(*releases: ReleaseResult, previous: StackStatus | None = None) -> StackStatus:
    rows = Rows(releases, targets=["c1"], chart_count=1)
    return compose(StatusInputs(Kind.FINAL, 1, NOW, previous, rows=rows))


def test_drift_shows_in_the_row_the_count_and_the_condition() -> None:
    drift = ReleaseDrift(
        objects=(ObjectDrift(DEPLOY, ("/spec/replicas",)), ObjectDrift(SERVICE, missing=True)),
        seen=NOW.timestamp(),
    )
    status = final(result(drift), result(ReleaseDrift(), "db"))
    row = next(r for r in status.deployments if r.release_name == "web")
    assert row.drift is not None
    assert row.drift.objects == 2
    assert row.drift.entries == ["Deployment/web: /spec/replicas", "Service/web: missing"]
    assert row.drift.seen_at == "2026-01-02T10:00:00Z"
    clean = next(r for r in status.deployments if r.release_name == "db")
    assert clean.drift is None
    assert status.drifted_objects == 2
    condition = next(c for c in status.conditions if c.type == "Drifted")
    assert condition.status == "True" and condition.reason == "DriftDetected"
    assert "c1/apps/web Deployment/web: /spec/replicas" in condition.message
    assert status.phase == "Deployed"


def test_a_corrected_release_says_when_and_the_condition_clears() -> None:
    drifted = final(result(ReleaseDrift(objects=(ObjectDrift(DEPLOY, ("/x",)),))))
    corrected = ReleaseDrift(corrected=1, corrected_at=NOW.timestamp(), mode="Correct")
    status = final(result(corrected), previous=drifted)
    row = status.deployments[0]
    assert row.drift is not None
    assert row.drift.objects == 0 and row.drift.corrected_at == "2026-01-02T10:00:00Z"
    condition = next(c for c in status.conditions if c.type == "Drifted")
    assert (condition.status, condition.reason) == ("False", "NoDrift")
    assert status.drifted_objects == 0


def test_a_write_without_checks_keeps_the_last_drift() -> None:
    drifted = final(result(ReleaseDrift(objects=(ObjectDrift(DEPLOY, ("/x",)),))))
    progress = compose(
        StatusInputs(
            Kind.PROGRESS,
            1,
            NOW,
            drifted,
            rows=Rows([replace(result(None), state=State.DEPLOYING)], targets=["c1"]),
        )
    )
    assert progress.drifted_objects == 1
    assert [c.status for c in progress.conditions if c.type == "Drifted"] == ["True"]


def test_problems_show_in_the_row_message() -> None:
    drift = ReleaseDrift(problems=("cannot list ConfigMap in other: HTTP 403 Forbidden",))
    row = final(result(drift)).deployments[0]
    assert row.drift is not None
    assert row.drift.objects == 0 and "403" in row.drift.message
