"""`status.security` during a soak: the scans a stage's security check reads reach the
status the pass offers while it soaks (`ChecksReport.scans`, `Kind.CHECKS`), not only
the probe's at the pass's end. Pure (the staged pass over a fake rollout and probe; the
real NeuVector stand-in is e2e/test_checks.py)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from herd.api.checks import FailOnLevel
from herd.api.status import (
    DeploymentRow,
    RolloutStatus,
    SecurityStatus,
    StackStatus,
    StageStatus,
)
from herd.operator.events import StackEvents
from herd.operator.progress import Progress
from herd.plan.results import ReleaseResult
from herd.rollout.staged import ChecksReport
from herd.rollout.target import Target
from herd.status.facts import ClusterScan, FailOn, ImageScan, ImageVerdicts, Observation, ScanReport
from herd.status.pipeline import Kind, Rows, StatusInputs, compose
from test_checks_soak import FakeProbe, staged

IMAGE = "docker.io/library/web:1"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SOAKING = RolloutStatus(
    stage="canary",
    state="Paused",
    message="stage canary succeeded; soaking 50s more before stage prod",
    stages=[StageStatus(name="canary", done=1, total=1)],
)


def scanned(cluster: str, critical: int = 0, medium: int = 0) -> ClusterScan:
    report = ScanReport({IMAGE: ImageScan(critical=critical, medium=medium)})
    return ClusterScan(cluster, {("ns", "web"): frozenset({IMAGE})}, report=report)


class Rescans(FakeProbe):
    """NeuVector's report on c1, one per round (the last repeats): counts of medium
    vulnerabilities only, so no hold comes or goes; only what the check read changes."""

    def __init__(self, mediums: list[int]) -> None:
        super().__init__()
        self.mediums = mediums

    async def scan(
        self, target: Target, releases: Sequence[ReleaseResult], fail_on: FailOnLevel
    ) -> ImageVerdicts:
        medium = self.mediums.pop(0) if len(self.mediums) > 1 else self.mediums[0]
        return ImageVerdicts([], [], scanned(target.cluster, medium=medium))


async def test_a_new_scan_in_the_soak_is_reported_though_no_hold_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("herd.plan.checks.READINESS_TICK", 0.1)
    reports: list[ChecksReport] = []
    outcome, _ = await staged(
        Rescans([1, 1, 2]),  # first round, soak rounds...
        {"readiness": False, "security": {}},
        on_checks=reports.append,
        security="enabled",
    )
    assert outcome.status.state == "Complete", outcome.status
    mediums = [r.scans["c1"].report.images[IMAGE].medium for r in reports]  # type: ignore[union-attr]
    assert mediums == [1, 2], reports  # the soak's start, then the rescan
    assert [r.rollout.state for r in reports] == ["Paused", "Paused"]
    assert reports[0].clusters == ("c1", "c2")


def rows() -> list[DeploymentRow]:
    return [
        DeploymentRow(
            chart_name="web",
            cluster_id=c,
            namespace="ns",
            release_name="web",
            status="Deployed",
            security_scan="Failed",
        )
        for c in ("c1", "c2")
    ]


def test_the_checks_scans_make_the_security_summary_of_a_status_in_flight() -> None:
    """The last final write counted c1's critical vulnerability; the soak's check reads a
    clean rescan of c1: the summary, its condition and c1's row follow at once; c2 keeps
    what the last probe saw of it."""
    before = StackStatus(
        phase="Deploying",
        deployments=rows(),
        security=SecurityStatus(
            neu_vector_enabled=True, scan_status="Completed", vulnerabilities=2, critical_issues=1
        ),
    )
    seen = {"c1": scanned("c1", medium=2), "c2": scanned("c2", medium=2)}
    inputs = StatusInputs(
        Kind.CHECKS,
        3,
        NOW,
        before,
        rollout=SOAKING,
        rows=Rows(targets=["c1", "c2"]),
        observed=Observation(scans=seen, fail_on=FailOn.CRITICAL),
    )
    status = compose(inputs)
    assert status.rollout == SOAKING
    assert status.security is not None
    assert (status.security.critical_issues, status.security.vulnerabilities) == (0, 2)
    assert [r.security_scan for r in status.deployments] == ["Passed", "Passed"]
    scanned_condition = next(c for c in status.conditions if c.type == "SecurityScanned")
    assert scanned_condition.reason == "ScanCompleted"

    seen["c1"] = scanned("c1", critical=1, medium=2)
    status = compose(StatusInputs(Kind.CHECKS, 3, NOW, status, rows=Rows(targets=["c1", "c2"]),
                                  observed=Observation(scans=seen)))  # fmt: skip
    assert status.security is not None and status.security.critical_issues == 1
    assert [r.security_scan for r in status.deployments] == ["Failed", "Passed"]
    assert status.rollout == SOAKING  # no new rollout word: the last one stays


class Writer:
    def __init__(self) -> None:
        self.offered: list[StackStatus] = []

    def offer(self, build: Any) -> None:
        self.offered.append(build())


def test_a_pass_in_flight_shows_what_the_check_read_over_the_last_probes_scans() -> None:
    writer = Writer()
    previous = StackStatus(phase="Ready", deployments=rows(), target_clusters=["c1", "c2"])
    progress = Progress(
        writer,  # type: ignore[arg-type]
        StackEvents(None, window=60.0),
        logging.getLogger("test"),
        previous,
        generation=2,
        reconcile_at=None,
        max_rows=100,
        scans={"c1": scanned("c1", critical=1), "c2": scanned("c2", critical=1)},
    )
    report = ChecksReport(SOAKING, {"c1": scanned("c1")}, ("c1", "c2"))
    progress.checks(report)
    status = writer.offered[-1]
    assert status.security is not None and status.security.critical_issues == 1  # c2's
    assert [r.security_scan for r in status.deployments] == ["Passed", "Failed"]
    progress.stage(SOAKING.model_copy(update={"state": "Progressing", "stage": "prod"}))
    progress.checks(ChecksReport(SOAKING))  # the rollout moved on: what was read stays
    assert writer.offered[-1].security == status.security
