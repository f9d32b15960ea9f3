"""Health gates carried out: the soak against a fake `ClusterProbe`, a staged pass with
checks over a fake rollout, and what the status says (the real probes run on the test
bed: e2e/test_checks.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from herd.api import parse_spec
from herd.api.checks import Checks, FailOnLevel
from herd.api.status import (
    CheckFailure,
    DeploymentRow,
    RolloutStatus,
    StackStatus,
    StageStatus,
)
from herd.plan.checks import (
    Unready,
    merge_checks,
)
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.rollout.checks import StageChecker
from herd.rollout.staged import ChecksReport, StageInputs, run_staged
from herd.rollout.target import Target
from herd.status.facts import ImageVerdicts
from herd.status.pipeline import Kind, StatusInputs, compose
from herd.status.rollout import rollout_events, with_rollout

BASE = {
    "targets": {"clusterIds": ["x"]},
    "charts": [{"name": "a", "repo": "https://r", "version": "1"}],
}


def metric(**fields: Any) -> dict[str, Any]:
    return {"name": "errors", "query": "sum(x)", "threshold": {"max": 0.05}, **fields}


# -- the soak, against a fake probe -----------------------------------------------------


class FakeProbe:
    def __init__(self) -> None:
        self.unready_answers: list[Unready | None] = []
        self.values: list[float | None] = []
        self.scans: tuple[list[str], list[str]] = ([], [])
        self.queries: list[str] = []
        self.warmed = 0

    def warm(self) -> None:
        self.warmed += 1

    async def unready(self, target: Target, releases: Sequence[ReleaseResult]) -> Unready | None:
        return self.unready_answers.pop(0) if self.unready_answers else None

    async def metric(self, target: Target, query: str) -> float | None:
        self.queries.append(query)
        return self.values.pop(0) if self.values else 0.0

    async def scan(
        self, target: Target, releases: Sequence[ReleaseResult], fail_on: FailOnLevel
    ) -> ImageVerdicts:
        return ImageVerdicts(*self.scans)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def checker(probe: FakeProbe, clock: Clock, **checks: Any) -> StageChecker:
    merged = merge_checks(None, Checks.model_validate(checks))
    assert merged is not None
    result = ReleaseResult(ReleaseKey("c1", "ns", "web"), "web", State.DEPLOYED, revision=1)
    targets = {"c1": Target("c1", Path("/dev/null"))}
    return StageChecker(cast(Any, probe), merged, targets, lambda: [result], clock)


async def test_readiness_holds_while_coming_up_and_fails_in_the_soak() -> None:
    probe, clock = FakeProbe(), Clock()
    stage = checker(probe, clock)
    probe.unready_answers = [Unready("Deployment ns/web is InProgress")]
    first = await stage.round(["c1"], first=True)
    assert first.failed == {} and "waiting: Deployment ns/web" in first.held["c1"]
    probe.unready_answers = [Unready("Pod ns/web-1 is InProgress: not Ready")]
    later = await stage.round(["c1"])
    assert later.failed == {"c1": "check readiness: Pod ns/web-1 is InProgress: not Ready"}


async def test_a_failed_object_fails_even_the_first_round() -> None:
    probe, clock = FakeProbe(), Clock()
    probe.unready_answers = [Unready("Job ns/migrate is Failed", failed=True)]
    result = await checker(probe, clock).round(["c1"], first=True)
    assert "Job ns/migrate is Failed" in result.failed["c1"]


async def test_a_metric_fails_the_cluster_after_its_failure_limit() -> None:
    probe, clock = FakeProbe(), Clock()
    query = 'sum(errors{release="{{ .Release.Name }}",cluster="{{ .Cluster.Id }}"})'
    stage = checker(
        probe,
        clock,
        readiness=False,
        metrics=[metric(query=query, failureLimit=2, interval="10s")],
    )
    probe.values = [0.5, 0.5, 0.5]
    assert (await stage.round(["c1"])).failed == {}
    assert probe.queries == ['sum(errors{release="web",cluster="c1"})']
    assert (await stage.round(["c1"])).failed == {}  # not due: 10 s have not passed
    clock.now += timedelta(seconds=10)
    failed = (await stage.round(["c1"])).failed
    assert failed == {
        "c1": "check errors: release ns/web: 0.5 is above max 0.05 (2 failed evaluations)"
    }


async def test_security_holds_then_passes_then_fails_past_the_timeout() -> None:
    probe, clock = FakeProbe(), Clock()
    stage = checker(probe, clock, readiness=False, security={"pendingTimeout": "1m"})
    probe.scans = (["docker.io/library/web:1"], [])
    held = await stage.round(["c1"])
    assert held.held == {
        "c1": "check security: image docker.io/library/web:1 has critical vulnerabilities"
    }
    probe.scans = ([], [])
    assert await stage.round(["c1"]) == type(held)()
    probe.scans = ([], ["docker.io/library/web:2"])
    clock.now += timedelta(minutes=2)
    assert "still not scanned after 1m" in (await stage.round(["c1"])).failed["c1"]


async def test_the_soak_stops_at_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    probe, clock = FakeProbe(), Clock()

    async def no_sleep(seconds: float) -> None:
        clock.now += timedelta(seconds=seconds)

    monkeypatch.setattr("herd.rollout.checks.asyncio.sleep", no_sleep)
    stage = checker(probe, clock)
    probe.unready_answers = [None, None, Unready("Pod ns/web-1 is InProgress")]
    rounds: list[int] = []
    result = await stage.soak(
        ["c1"], clock.now + timedelta(minutes=5), on_round=lambda r: rounds.append(1)
    )
    assert len(rounds) == 3 and "Pod ns/web-1" in result.failed["c1"]


# -- a staged pass with checks, over a fake rollout ---------------------------------------


class FakeRollout:
    """Deploys every release it is asked to (the helm half is e2e's)."""

    def __init__(self, probe: FakeProbe | None = None) -> None:
        self.results: dict[ReleaseKey, ReleaseResult] = {}
        self.unreachable: dict[str, str] = {}
        self.runs: list[list[str]] = []
        self.probe = probe
        self.warmed: list[int] = []  # the probe's warm() calls when each run began

    async def run(self, plan: Any, targets: Sequence[Target], **_: Any) -> None:
        self.runs.append([t.cluster for t in targets])
        self.warmed.append(self.probe.warmed if self.probe else 0)
        for target in targets:
            key = ReleaseKey(target.cluster, "ns", "web")
            self.results[key] = ReleaseResult(key, "web", State.DEPLOYED, revision=1)

    def cluster_failed(self, cluster: str) -> bool:
        return False


class FakePlan:
    def releases_for(self, cluster: str) -> list[Any]:
        return []


async def staged(
    probe: FakeProbe | None,
    checks: dict[str, Any] | None,
    on_checks: Callable[[ChecksReport], None] | None = None,
    **top: Any,
) -> Any:
    stages: list[dict[str, Any]] = [
        {"name": "canary", "clusterIds": ["c1"], "pause": "2s"},
        {"name": "prod", "clusterIds": ["c2"]},
    ]
    rollout = {"stages": stages, **({"checks": checks} if checks else {})}
    spec = parse_spec({**BASE, **top, "rollout": rollout}).rollout
    members = [Cluster(c, c, {}, True, "file", KubeconfigRef()) for c in ("c1", "c2")]
    targets = [Target(c, Path("/dev/null")) for c in ("c1", "c2")]
    fake = FakeRollout(probe)
    outcome = await run_staged(
        cast(Any, fake),
        cast(Any, FakePlan()),
        targets,
        members,
        spec=spec,
        suspended=False,
        known_failed={},
        inputs=StageInputs(probe=cast(Any, probe), on_checks=on_checks),
    )
    return outcome, fake


async def test_without_checks_a_staged_pass_is_unchanged() -> None:
    outcome, fake = await staged(None, None)
    assert outcome.status.state == "Paused"
    assert fake.runs == [["c1"], ["c2"]]  # canary run, prod observed only


@pytest.mark.parametrize(
    ("checks", "warmed"),
    [
        ({"readiness": True}, [1, 1]),
        ({"readiness": False, "security": {}}, [1, 1]),
        ({"readiness": False, "metrics": [metric()]}, [0, 0]),
    ],
)
async def test_the_checks_workers_warm_before_the_first_stage_deploys(
    checks: dict[str, Any], warmed: list[int]
) -> None:
    """Readiness and security parse manifests in the worker pool: it starts while helm
    deploys the first stage (once a pass), not when the first check round needs it."""
    probe = FakeProbe()
    _, fake = await staged(probe, checks, security="enabled")
    assert fake.warmed == warmed


async def test_a_check_failing_during_the_soak_halts_and_persists() -> None:
    probe = FakeProbe()
    probe.unready_answers = [None, Unready("Pod ns/web-1 is InProgress: not Ready")]
    outcome, fake = await staged(probe, {"readiness": True})
    status = outcome.status
    assert status.state == "Halted", status
    assert "cluster c1: check readiness: Pod ns/web-1" in status.message
    canary = status.stages[0]
    assert [(f.cluster_id, f.message) for f in canary.failed_checks] == [
        ("c1", "check readiness: Pod ns/web-1 is InProgress: not Ready")
    ]
    assert canary.succeeded_at is None
    assert fake.runs[-1] == ["c2"]  # prod only observed: no helm write there


def test_rows_conditions_and_events_name_the_failed_check() -> None:
    failure = CheckFailure(cluster_id="c1", message="check errors: 0.2 is above max 0.05")
    rollout = RolloutStatus(
        stage="canary",
        state="Halted",
        message="1 failed clusters exceed maxFailures 0; first failure: cluster c1: check errors",
        stages=[StageStatus(name="canary", total=1, failed_checks=[failure])],
    )
    rows = [
        DeploymentRow(chart_name="web", cluster_id="c1", status="Deployed"),
        DeploymentRow(chart_name="web", cluster_id="c2", status="Pending", message="waiting"),
    ]
    status = StackStatus(phase="Ready", deployments=rows, deployment_counts={"Deployed": 1})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    out = with_rollout(status, rollout, now)
    assert [r.message for r in out.deployments] == [failure.message, "waiting"]
    stalled = next(c for c in out.conditions if c.type == "Stalled")
    assert stalled.status == "True" and "check errors" in stalled.message
    events = rollout_events(None, rollout)
    assert ("Warning", "CheckFailed", f"Stage canary, cluster c1: {failure.message}") in events
    assert not [e for e in rollout_events(rollout, rollout) if e[1] == "CheckFailed"]


async def test_a_held_canary_holds_prod_back_and_asks_for_a_pass_soon() -> None:
    probe = FakeProbe()
    probe.scans = (["docker.io/library/web:1"], [])
    outcome, fake = await staged(probe, {"readiness": False, "security": {}}, security="enabled")
    status = outcome.status
    assert status.state == "Progressing", status
    assert "1 held by checks, first c1: check security: image docker.io" in status.message
    assert [h.cluster_id for h in status.stages[0].held_checks] == ["c1"]
    assert outcome.wake_seconds == 30.0
    assert fake.runs[-1] == ["c2"]  # prod only observed


# -- a hold during the soak: the status follows it while the pass goes on --------------


class ScanSequence(FakeProbe):
    """The security verdicts, one per round (the last repeats)."""

    def __init__(self, verdicts: list[list[str]]) -> None:
        super().__init__()
        self.verdicts = verdicts

    async def scan(
        self, target: Target, releases: Sequence[ReleaseResult], fail_on: FailOnLevel
    ) -> ImageVerdicts:
        failed = self.verdicts.pop(0) if len(self.verdicts) > 1 else self.verdicts[0]
        return ImageVerdicts((failed if target.cluster == "c1" else []), [])


async def test_a_hold_in_the_soak_is_reported_as_it_appears_and_clears(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("herd.plan.checks.READINESS_TICK", 0.1)  # rounds 10x per second
    image = "docker.io/library/web:1"
    probe = ScanSequence([[], [], [image], [image], []])  # first round, soak rounds...
    reports: list[RolloutStatus] = []
    outcome, fake = await staged(
        probe,
        {"readiness": False, "security": {}},
        on_checks=lambda report: reports.append(report.rollout),
        security="enabled",
    )
    assert [r.state for r in reports] == ["Paused", "Progressing", "Paused"], reports
    held = reports[1].stages[0].held_checks
    assert [(h.cluster_id, h.message) for h in held] == [
        ("c1", f"check security: image {image} has critical vulnerabilities")
    ]
    assert "1 held by checks" in reports[1].message
    assert reports[2].stages[0].held_checks == []
    # The hold did not end the soak nor restart its clock: prod rolled out after it.
    assert reports[0].stages[0].succeeded_at == reports[2].stages[0].succeeded_at
    assert outcome.status.state == "Complete", outcome.status
    assert fake.runs == [["c1"], ["c2"]]


def test_a_status_in_flight_follows_the_checks_and_keeps_the_rest() -> None:
    why = "check security: image web:1 has critical vulnerabilities"
    held = RolloutStatus(
        stage="canary",
        state="Progressing",
        message=f"stage canary: 0 of 1 clusters deployed, 1 held by checks, first c1: {why}",
        stages=[
            StageStatus(
                name="canary", total=1, held_checks=[CheckFailure(cluster_id="c1", message=why)]
            )
        ],
    )
    soaking = RolloutStatus(
        stage="canary",
        state="Paused",
        message="stage canary succeeded; soaking 50s more before stage prod",
        stages=[StageStatus(name="canary", done=1, total=1)],
    )
    rows = [
        DeploymentRow(chart_name="web", cluster_id="c1", status="Deployed"),
        DeploymentRow(chart_name="web", cluster_id="c2", status="Pending", message="waiting"),
    ]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = StackStatus(phase="Ready", deployments=rows, deployment_counts={"Deployed": 1})
    before = with_rollout(base, held, now)  # a final write: the row says why it is held
    assert [r.message for r in before.deployments] == [why, "waiting"]

    cleared = compose(StatusInputs(Kind.CHECKS, 3, now, before, rollout=soaking))
    assert cleared.rollout == soaking
    assert [r.message for r in cleared.deployments] == ["", "waiting"]
    assert cleared.phase == "Deploying" and cleared.message == soaking.message

    again = compose(StatusInputs(Kind.CHECKS, 3, now, cleared, rollout=held))
    assert again.rollout == held
    assert [r.message for r in again.deployments] == [why, "waiting"]
    assert again.phase == "Deploying" and "1 held by checks" in again.message
    reconciling = next(c for c in again.conditions if c.type == "Reconciling")
    assert reconciling.status == "True" and "held by checks" in reconciling.message


async def test_one_clusters_fault_holds_it_and_never_cancels_the_others() -> None:
    class Faulty(FakeProbe):
        async def unready(
            self, target: Target, releases: Sequence[ReleaseResult]
        ) -> Unready | None:
            if target.cluster == "c1":
                raise RuntimeError("boom")
            return Unready("Pod ns/web-1 is InProgress: not Ready")

    merged = merge_checks(None, Checks.model_validate({"readiness": True}))
    assert merged is not None
    results = [
        ReleaseResult(ReleaseKey(c, "ns", "web"), "web", State.DEPLOYED, revision=1)
        for c in ("c1", "c2")
    ]
    targets = {c: Target(c, Path("/dev/null")) for c in ("c1", "c2")}
    stage = StageChecker(cast(Any, Faulty()), merged, targets, lambda: results, Clock())

    found = await stage.round(["c1", "c2"])

    assert found.held == {"c1": "checks not run: unexpected RuntimeError"}
    assert "Pod ns/web-1 is InProgress" in found.failed["c2"]
