"""The keeper's decisions around one pass, with the engine and API server as stand-ins:
every exception ends as the Stack's status message; a cluster that does not answer is
backed off alone (`defer`) and sets the next pass; held failures and the record are
passed to the engine. The real thing runs in e2e/test_operator_faults.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Collection, Mapping
from typing import Any

import pytest

from herd.api import StackStatus
from herd.api.status import CheckFailure, DeploymentRow, RolloutStatus, StageStatus
from herd.engine.protocols import StackResult
from herd.errors import TransientError
from herd.operator import metrics
from herd.operator.config import OperatorConfig
from herd.operator.index import TargetIndex
from herd.operator.keeper import Keeper
from herd.operator.runtime import Runtime
from herd.operator.stack import finish_pass
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.plan.tenancy import Grants, Mode
from herd.rollout.staged import ChecksReport
from herd.status.facts import FailOn, Observation

BODY = {
    "apiVersion": "herd.suse.com/v1",
    "kind": "Stack",
    "metadata": {"name": "s", "namespace": "default", "generation": 1},
    "spec": {
        "targets": {"clusterIds": ["alive", "dead"]},
        "charts": [{"name": "db", "repo": "https://charts.example.com", "version": "1.0.0"}],
    },
}


class FakeEngine:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error: Exception | None = None
        self.clusters = ("alive", "dead")
        self.waiting = False  # "alive" reports a release another actor is changing

    async def apply(self, stack: Any, on_progress: Any, **kwargs: Any) -> StackResult:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        defer: Collection[str] = kwargs["defer"]
        releases = []
        for cluster in self.clusters:
            key = ReleaseKey(cluster, "default", "db")
            if cluster == "alive" and self.waiting:
                state, message = State.PENDING, "operation in progress elsewhere, 5 s old"
            elif cluster in defer:
                state, message = State.UNREACHABLE, "retrying in 30s: connection refused"
            elif cluster == "dead":
                state, message = State.UNREACHABLE, "connection refused"
            else:
                state, message = State.DEPLOYED, ""
            result = ReleaseResult(key, "db", state, message=message, transient=bool(message))
            on_progress(result)
            releases.append(result)
        result = StackResult(None, [], [], releases)
        if "dead" in self.clusters and "dead" not in defer:
            result.unreachable["dead"] = "connection refused"
        result.holding = frozenset({"alive", "dead"})
        return result


class FakeProbe:
    fail_on = FailOn.CRITICAL

    async def observe(self, result: Any, inventory: Any) -> Observation:
        return Observation()


class FakeRuntime:
    def __init__(self) -> None:
        self.config = OperatorConfig(retry_seconds=4.0, resync_seconds=300.0)
        self.engine = FakeEngine()
        self.probe = FakeProbe()
        self.inventory = None
        self.index = TargetIndex()
        self.fleet = metrics.Fleet()
        self.written: list[StackStatus] = []

    def known_clusters(self) -> list[Cluster]:
        return []

    def bounded(self, namespace: str) -> bool:
        return Runtime.bounded(self, namespace)  # type: ignore[arg-type]

    async def grants(self, namespace: str) -> Grants:
        return Grants(namespace, unrestricted=True)

    async def patch_status(self, key: Any, status: StackStatus) -> None:
        self.written.append(status)


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


def keeper(runtime: FakeRuntime, body: dict[str, Any] = BODY) -> Keeper:
    made = Keeper(runtime, body, logging.getLogger("test"), None)  # type: ignore[arg-type]
    made.writer.start()
    return made


@pytest.mark.parametrize(
    ("error", "words", "unsaid"),
    [
        # An unforeseen error's text may quote a kubeconfig or token: only its type is shown.
        (
            RuntimeError("token=s3cr3t in the kubeconfig"),
            ["Reconcile failed", "RuntimeError"],
            "s3cr3t",
        ),
        (TransientError("cluster c-m-1: Secret unreadable"), ["c-m-1", "retrying in"], None),
    ],
)
async def test_every_exception_ends_as_a_status_message(
    runtime: FakeRuntime, error: Exception, words: list[str], unsaid: str | None
) -> None:
    runtime.engine.error = error
    k = keeper(runtime)
    delay = await k.reconcile(BODY)
    await k.writer.flush()
    await k.writer.close()
    assert 2.0 <= delay <= 4.0
    assert all(w in runtime.written[-1].message for w in words), runtime.written[-1].message
    assert unsaid is None or unsaid not in runtime.written[-1].message


@pytest.mark.parametrize(
    ("namespace", "tenancy", "woken"),
    [
        ("default", Mode.GRANTS, True),
        ("herd-system", Mode.GRANTS, False),
        ("default", Mode.OPEN, False),
    ],
)
async def test_a_relabel_wakes_a_stack_that_grants_bound(
    runtime: FakeRuntime, namespace: str, tenancy: Mode, woken: bool
) -> None:
    """A grant may select clusters by label: relabelling a cluster the Stack targets before
    and after may grant or withdraw it, so it wakes the Stack (not an admin or open one)."""
    runtime.config = OperatorConfig(retry_seconds=4.0, resync_seconds=300.0, tenancy=tenancy)
    body = {**BODY, "metadata": {**BODY["metadata"], "namespace": namespace}}
    k = keeper(runtime, body)
    await k.reconcile(body)
    await k.writer.close()
    ref = KubeconfigRef.secret("fleet-default", "one-kubeconfig", "value", "1")
    before = Cluster("alive", "one", {"env": "prod"}, True, "rancher", ref)
    after = dataclasses.replace(before, labels={"env": "staging"})
    assert (runtime.index.affected(before, after) == {(namespace, "s")}) is woken


async def test_a_dead_cluster_is_backed_off_alone_and_sets_the_next_pass(
    runtime: FakeRuntime,
) -> None:
    k = keeper(runtime)
    delay = await k.reconcile(BODY)
    assert 2.0 <= delay <= 4.0, "the next pass comes when the dead cluster is due"
    assert runtime.engine.calls[0]["defer"] == {}
    assert runtime.engine.calls[0]["previous_targets"] is None  # no status yet: check all
    await k.reconcile(BODY)  # too early for "dead": it is not contacted
    assert set(runtime.engine.calls[1]["defer"]) == {"dead"}
    assert runtime.engine.calls[1]["defer"]["dead"].why == "connection refused"
    assert k.backoff.attempts("dead") == 1 and k.backoff.attempts("alive") == 0
    status = runtime.written[-1]
    assert status.release_clusters == ["alive", "dead"]
    assert runtime.engine.calls[1]["previous_targets"] >= {"alive", "dead"}
    await k.writer.close()


async def test_a_new_generation_ends_every_backoff(runtime: FakeRuntime) -> None:
    k = keeper(runtime)
    await k.reconcile(BODY)
    await k.reconcile(BODY)
    assert set(runtime.engine.calls[1]["defer"]) == {"dead"}
    changed = {**BODY, "metadata": {**BODY["metadata"], "generation": 2}}
    await k.reconcile(changed)  # the fixed spec is tried at once, also on "dead"
    assert runtime.engine.calls[2]["defer"] == {}
    await k.writer.close()


@pytest.mark.parametrize(("waiting", "expected"), [(True, 4.0), (False, 300.0)])
async def test_a_release_waiting_on_a_live_actor_is_retried_soon(
    runtime: FakeRuntime, waiting: bool, expected: float
) -> None:
    runtime.engine.clusters = ("alive",)
    runtime.engine.waiting = waiting
    k = keeper(runtime)
    assert await k.reconcile(BODY) == expected
    await k.writer.close()


async def test_held_failures_go_to_the_engine(runtime: FakeRuntime) -> None:
    previous = StackStatus(
        phase="Degraded",
        observed_generation=1,
        deployments=[
            DeploymentRow(
                chart_name="db",
                cluster_id="alive",
                release_name="db",
                namespace="default",
                status="Failed",
                failed_config="d1",
            )
        ],
    )
    body = {**BODY, "status": previous.model_dump(by_alias=True, mode="json")}
    k = keeper(runtime, body)
    await k.reconcile(body)
    held: Mapping[ReleaseKey, str] = runtime.engine.calls[0]["held"]
    assert held == {ReleaseKey("alive", "default", "db"): "d1"}
    await k.writer.close()


async def test_a_cancelled_daemon_lets_its_passfinish_pass() -> None:
    finished = asyncio.Event()

    async def a_pass() -> float:
        await asyncio.sleep(0.3)
        finished.set()
        return 1.0

    daemon = asyncio.ensure_future(finish_pass(a_pass(), logging.getLogger("test")))
    await asyncio.sleep(0.05)
    daemon.cancel()
    await asyncio.sleep(0.01)
    daemon.cancel()  # kopf escalates: cancelled again
    with contextlib.suppress(asyncio.CancelledError):
        await daemon
    assert finished.is_set(), "the daemon ended before its pass"


class SoakingEngine(FakeEngine):
    """A pass whose soak's checks hold the cluster, then clear it, before the pass ends."""

    def __init__(self, runtime: FakeRuntime) -> None:
        super().__init__()
        self.clusters = ("alive",)
        self.runtime = runtime
        self.seen: list[list[str]] = []  # held clusters written while the pass ran

    async def apply(self, stack: Any, on_progress: Any, **kwargs: Any) -> StackResult:
        report = kwargs["staging"].on_checks
        why = [CheckFailure(cluster_id="alive", message="check security: image web:1")]
        for state, held in (("Progressing", why), ("Paused", [])):
            stage = StageStatus(name="canary", total=1, held_checks=held)
            rollout = RolloutStatus(stage="canary", state=state, message=state, stages=[stage])
            report(ChecksReport(rollout))
            for _ in range(50):  # the writer is throttled to one write a second
                await asyncio.sleep(0.1)
                rollout = self.runtime.written[-1].rollout if self.runtime.written else None
                if rollout is not None and rollout.state == state:
                    break
            self.seen.append(
                [h.cluster_id for h in rollout.stages[0].held_checks] if rollout else []
            )
        return await super().apply(stack, on_progress, **kwargs)


async def test_a_soaks_checks_are_written_while_the_pass_runs(runtime: FakeRuntime) -> None:
    engine = runtime.engine = SoakingEngine(runtime)
    row = DeploymentRow(chart_name="db", cluster_id="alive", status="Deployed")
    body = {
        **BODY,
        "status": StackStatus(phase="Ready", deployments=[row]).model_dump(by_alias=True),
    }
    k = keeper(runtime, body)
    await k.reconcile(body)
    await k.writer.close()
    assert engine.seen == [["alive"], []]
    during = [s for s in runtime.written if s.rollout is not None and s.rollout.state == "Paused"]
    assert during and during[0].deployments == [row]  # the rows stay the last pass's
