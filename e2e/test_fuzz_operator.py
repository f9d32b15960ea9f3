"""Generated Stack bodies through the real API server and the real controller.

About 30 bodies drawn from the CRD's openAPIV3Schema (plus the targeted nasty ones:
`chart: --help`, `--repo=...`, unicode, long names) are created at once on the
management cluster. Their targets can only ever match a cluster whose API is a closed
port, so nothing is installed. The controller must not crash (no exit, no Traceback or
"Reconcile failed"), every Stack the API server accepted must get a clear status (a
phase and a message) within a bounded time, and no helm call may be made for a Stack
the controller found invalid.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from e2e.testbed import fuzz_run, stack_fuzz
from e2e.testbed.controlplane import Cluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_controller import (
    Controller,
    prepare_management,
)
from e2e.testbed.herd_controller import service_account_kubeconfig as sa_kubeconfig

RANCHER_NS = "fleet-fuzz-e2e"
NAMESPACE = "fuzz-e2e"
BODIES = 20  # plus the 10 targeted ones
STATUS_TIMEOUT = 75.0


@pytest.fixture(scope="module")
def controller(
    management: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controller]:
    directory = tmp_path_factory.mktemp("fuzz-operator")
    prepare_management(management.kubeconfig, [RANCHER_NS])
    fuzz_run.register_dead_cluster(management.kubeconfig, RANCHER_NS, directory)
    kubectl(management.kubeconfig, "create", "namespace", NAMESPACE, check=False)
    process = Controller(
        "fuzz",
        directory,
        sa_kubeconfig(management.kubeconfig, directory / "controller.yaml"),
        NAMESPACE,
        settings={
            "HERD_RANCHER_NAMESPACES": RANCHER_NS,
            "HERD_RESYNC_SECONDS": "30",
            "HERD_RETRY_SECONDS": "5",
            "HERD_FLEET_SECONDS": "2",
        },
    )
    process.start()
    try:
        yield process
    finally:
        process.stop(grace=20)


def test_generated_bodies_get_a_status_and_no_crash(
    controller: Controller, management: Cluster
) -> None:
    since = time.time()
    specs = fuzz_run.bodies(BODIES, NAMESPACE)
    outcome = fuzz_run.run(management.kubeconfig, NAMESPACE, specs, STATUS_TIMEOUT)
    time.sleep(3)  # a crash just after the last status counts too
    verdict = fuzz_run.judge(controller, outcome, since)
    log_tail = controller.log_text()[-3000:]
    assert not verdict.crashed, f"the controller exited\n{log_tail}"
    assert verdict.crash_lines == [], "\n".join(verdict.crash_lines[:10])
    assert outcome.accepted, "the API server rejected every generated body"
    missing = sorted(set(outcome.accepted) - set(outcome.with_status()))
    assert missing == [], {n: outcome.statuses.get(n) for n in missing[:5]}
    assert verdict.helm_calls_for_invalid == [], verdict.helm_calls_for_invalid[:5]


def test_flag_like_chart_is_failed_with_the_field_named(
    controller: Controller, management: Cluster
) -> None:
    """`chart: --help` (issue 11) ends Failed naming spec.charts[0].chart, no helm call."""
    since = time.time()
    body = stack_fuzz.stack_body(
        "fuzz-flag",
        NAMESPACE,
        {
            "targets": {"selector": {"matchLabels": dict(fuzz_run.DEAD_LABELS)}},
            "charts": [
                {
                    "name": "a",
                    "chart": "--help",
                    "repo": "http://127.0.0.1:1/fuzz-flag/",
                    "version": "0.1.0",
                }
            ],
        },
    )
    outcome = fuzz_run.run(management.kubeconfig, NAMESPACE, [body], STATUS_TIMEOUT)
    if outcome.rejected:
        return  # the CRD itself refuses flag-like charts: even better
    status = outcome.statuses.get("fuzz-flag") or {}
    assert status.get("phase") == "Failed", status
    assert "spec.charts[0].chart" in status.get("message", ""), status
    assert not [c for c in controller.helm_calls(since) if "/fuzz-flag/" in " ".join(c.args)]


def test_values_source_name_with_a_slash_gets_a_status(
    controller: Controller, management: Cluster
) -> None:
    """A values.from name that is no object name (here `/tmp`) must still get a status:
    a spec error naming the field, or at least a phase and message while retrying."""
    name, source = "fuzz-slash", "/tmp"
    body = stack_fuzz.stack_body(
        name,
        NAMESPACE,
        {
            "targets": {"clusterIds": ["c-m-nowhere"]},
            "charts": [
                {
                    "name": "a",
                    "repo": f"http://127.0.0.1:1/{name}/",
                    "version": "0.1.0",
                    "values": {"from": [{"kind": "ConfigMap", "name": source}]},
                }
            ],
        },
    )
    outcome = fuzz_run.run(management.kubeconfig, NAMESPACE, [body], 30)
    assert outcome.rejected or outcome.with_status() == [name], outcome.statuses
