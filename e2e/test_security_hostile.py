"""Hostile bytes through the real controller: bounded time and memory, off the event loop.

The attacks of the tenancy issue, served as real charts by a real chart repository
(`e2e.testbed.hostile_bed`): a YAML alias bomb in crds/, YAML nested 900 deep, 6000 objects
in one manifest, a 60k-character templated value in a namespace with no grant, and a
subchart archive that decompresses to 150 MB. The controller (install/'s RBAC, its
ServiceAccount token) processes them while another tenant's Stack reaches Deployed; each
hostile Stack ends Failed with a clear, bounded message; the event loop never lags more
than 1 s (any hostile input handled on it costs seconds: the 150 MB archive alone; a
tighter bound read 288 ms once with two test beds on two cores), and the Lease is renewed
at least every third of its duration.

Then shutdown with a check stalled in a controller thread (`HERD_TEST_STALL_CHECKS`): on
SIGTERM, and after the Lease was given to another holder, the process exits within its
budget (`HERD_EXIT_SECONDS`), through the watchdog.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed import helpers, hostile_bed
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_controller import (
    CONTROLLER_NS,
    Controller,
)

LEASE_SECONDS = hostile_bed.LEASE_SECONDS
WAIT = 240.0
EXIT_SECONDS = 8.0
MESSAGE_LIMIT = 1100  # a row's failure message is at most 1000 characters (herd.helm.failures)


def controller(directory: Path, management: Path, **extra: str) -> Controller:
    return hostile_bed.controller(directory, management, **extra)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    with hostile_bed.serve_charts(tmp_path_factory.mktemp("hostile-charts")) as running:
        yield running


@pytest.fixture(scope="module")
def bed(management: BedCluster, downstream: list[BedCluster]) -> Iterator[Path]:
    hostile_bed.prepare(management.kubeconfig, downstream[0].kubeconfig)
    yield management.kubeconfig
    kubectl(management.kubeconfig, "delete", "clustergrants", hostile_bed.GOOD, hostile_bed.EVIL,
            check=False)  # fmt: skip


def _delete_stacks(management: Path, tmp: Path) -> None:
    """Delete every Stack of the scenario through a normal controller (finalizers). The
    deletions are asked for before it starts: it meets the Stacks as deletions and installs
    nothing first."""
    namespaces = (*hostile_bed.TENANTS, CONTROLLER_NS)
    for namespace in namespaces:
        kubectl(management, "delete", "stacks", "--all", "-n", namespace, "--wait=false",
                check=False)  # fmt: skip
    cleaner = controller(tmp / "cleaner", management)
    cleaner.start()
    try:
        for namespace in namespaces:
            kubectl(management, "delete", "stacks", "--all", "-n", namespace, "--timeout=180s",
                    check=False, timeout=240)  # fmt: skip
    finally:
        cleaner.stop()


def _final(management: Path, body: dict[str, Any], phases: tuple[str, ...]) -> dict[str, Any]:
    name = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
    return helpers.eventually(
        f"Stack {name} to reach {' or '.join(phases)}",
        lambda: (found := hostile_bed.status(management, body)).get("phase") in phases and found,
        WAIT,
    )


EXPECTED = {
    "alias-bomb": "the rendered manifest cannot be checked: more than 2000000 nodes",
    "deep-yaml": "the rendered manifest cannot be checked",
    "many-objects": "the rendered manifest cannot be checked: more than 5000 objects",
    "templated": "ClusterGrant",
    "zip-bomb": "big.yaml is 157286400 bytes, more than the",
}


def test_hostile_stacks_fail_bounded_while_the_lease_and_another_tenant_progress(
    bed: Path, repo: ChartRepo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("hostile-run")
    running = controller(tmp / "leader", bed)
    running.start()
    lease = hostile_bed.LeaseWatch(bed)
    try:
        hostile = hostile_bed.hostile_stacks(repo.url)
        good = hostile_bed.good_stack(repo.url)
        for body in (*hostile, good):
            hostile_bed.apply(bed, body)
        assert _final(bed, good, ("Deployed",))["phase"] == "Deployed"
        for body in hostile:
            found = _final(bed, body, ("Failed", "Degraded"))
            texts = [m for m in hostile_bed.messages(found) if m]
            expected = EXPECTED[body["metadata"]["name"]]
            assert any(expected in m for m in texts), (expected, texts)
            assert all(len(m) <= MESSAGE_LIMIT for m in texts), texts
        # The hostile Stacks now fail within a few seconds, about one renewal period: go on
        # watching until the Lease has been renewed three times since the controller began
        # (two gaps at least), whatever the verdicts took.
        helpers.eventually(
            "three Lease renewals", lambda: len(lease.renewals) >= 3, LEASE_SECONDS * 2
        )
        lag = hostile_bed.loop_lag(int(running.settings["HERD_METRICS_PORT"]))
        gap = lease.longest_gap()
        print(f"\nmax event-loop lag {lag * 1000:.0f} ms; longest Lease renewal gap {gap:.1f}s")
        assert lag <= 1.0
        assert len(lease.renewals) >= 3 and gap <= LEASE_SECONDS / 3
        assert "Lost Lease" not in running.log_text()
    finally:
        lease.stop()
        running.stop()
        _delete_stacks(bed, tmp)


@contextlib.contextmanager
def _stalled(bed: Path, repo: ChartRepo, directory: Path, name: str) -> Iterator[Controller]:
    """A controller whose render check hangs in a thread, with a tenant Stack stuck in it;
    afterwards the Lease is removed (a test may have handed it away) and the Stacks go."""
    stalled = controller(
        directory / "stalled", bed, HERD_TEST_STALL_CHECKS="1", HERD_CHECK_SECONDS="600",
        HERD_SHUTDOWN_SECONDS="3", HERD_EXIT_SECONDS=str(int(EXIT_SECONDS)),
    )  # fmt: skip
    body = hostile_bed.stack(hostile_bed.GOOD, name, "plain", repo.url, f"{hostile_bed.GOOD}-s")
    stalled.start()
    try:
        hostile_bed.apply(bed, body)
        helpers.eventually(
            "helm template to run (the check starts right after)",
            lambda: any(c.verb == "template" for c in stalled.helm_calls()),
            WAIT,
        )
        time.sleep(2)  # the check is now waiting on a worker that never answers
        yield stalled
    finally:
        stalled.stop()
        kubectl(bed, "delete", "lease", hostile_bed.LEASE, "-n", CONTROLLER_NS, check=False)
        if any(c.mutating for c in stalled.helm_calls()):
            _delete_stacks(bed, directory)
        else:
            _drop_stack(bed, body)


def _drop_stack(bed: Path, body: dict[str, Any]) -> None:
    """A Stack no helm call ever wrote for (its controller hung in the render check): it
    goes without a controller, its finalizer dropped, as nothing downstream is left."""
    where = (body["metadata"]["name"], "-n", body["metadata"]["namespace"])
    kubectl(bed, "delete", "stack", *where, "--wait=false", check=False)
    kubectl(bed, "patch", "stack", *where, "--type=merge", "-p",
            '{"metadata": {"finalizers": null}}', check=False)  # fmt: skip


def _exit_time(process: Controller, deadline: float) -> tuple[int, float]:
    """Wait for the process to end: its exit code and how long it took."""
    assert process.process is not None
    started = time.monotonic()
    code = process.process.wait(deadline)
    process.process = None
    took = time.monotonic() - started
    print(f"\n{process.name}: exit {code} after {took:.1f}s")
    return code, took


def test_sigterm_ends_a_controller_stuck_in_a_check_within_its_budget(
    bed: Path, repo: ChartRepo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with _stalled(bed, repo, tmp_path_factory.mktemp("hostile-sigterm"), "stall-term") as stuck:
        assert stuck.process is not None
        os.killpg(stuck.process.pid, signal.SIGTERM)
        _, took = _exit_time(stuck, EXIT_SECONDS + 30)
        assert took <= EXIT_SECONDS + 2
        assert "Shutdown budget of 8s spent" in stuck.log_text()  # the watchdog ended it


def test_a_controller_that_lost_its_lease_while_stuck_exits_within_its_budget(
    bed: Path, repo: ChartRepo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with _stalled(bed, repo, tmp_path_factory.mktemp("hostile-lost"), "stall-lost") as stuck:
        patch = {"spec": {"holderIdentity": "an-intruder", "leaseDurationSeconds": 3600}}
        kubectl(bed, "patch", "lease", hostile_bed.LEASE, "-n", CONTROLLER_NS, "--type=merge",
                "-p", json.dumps(patch))  # fmt: skip
        # Noticed at the next renewal (a fifth of the Lease), then the exit budget.
        code, took = _exit_time(stuck, LEASE_SECONDS + EXIT_SECONDS + 30)
        assert code == 1  # lost: the pod restarts as a standby
        assert took <= LEASE_SECONDS / 5 + EXIT_SECONDS + 3
        assert "Lost Lease" in stuck.log_text()
