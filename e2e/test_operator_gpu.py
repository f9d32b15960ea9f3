"""The GPU fit warning and GPU facts as a user sees them: `herd operator`, kubectl only.

A Stack asks for a GPU on a cluster whose nodes have none. The warning is in the row's
message (and a `GpuFit` Warning Event) while helm still waits, long before helm's
timeout; after the timeout the row keeps it in front of helm's error, with `gpuRequests`,
`gpuUtilization: Unavailable` and the cluster's `clusterResources`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.operator_run import Operator, run_operator

FLEET_NS = "fleet-gpu"
IDS = {
    "downstream-1": "c-m-gq000001",
    "downstream-2": "c-m-gq000002",
    "downstream-3": "c-m-gq000003",
}
LABELS = {
    "downstream-1": {"gpuop": "no"},
    "downstream-2": {"gpuop": "yes"},
    "downstream-3": {"gpuop": "no"},
}
STACK = "gpu-op"
NS = "op-gpu"  # within the targetNamespaces run_operator's ClusterGrant gives
HELM_TIMEOUT = 40


@pytest.fixture(scope="module")
def operator(
    management: BedCluster, downstream: list[BedCluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    with run_operator(
        management,
        downstream,
        tmp_path_factory.mktemp("gpu-operator"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
    ) as running:
        running.name = STACK
        yield running


def gpu_stack(repo: str) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": STACK, "namespace": "default"},
        "spec": {
            "targets": {"selector": {"matchLabels": {"gpuop": "yes"}}},
            "charts": [
                {
                    "name": "ollama",
                    "repo": repo,
                    "version": "1.4.0",
                    "namespace": NS,
                    "wait": True,
                    "timeout": f"{HELM_TIMEOUT}s",
                    "values": {"inline": {"ollama": {"gpu": {"enabled": True, "number": 1}}}},
                }
            ],
        },
    }


def row(status: dict[str, Any]) -> dict[str, Any]:
    rows = status.get("deployments") or [{}]
    return dict(rows[0])


def test_fit_warning_comes_while_helm_waits(operator: Operator, chart_repo_url: str) -> None:
    warning = (
        "GPU warning: requests 1 nvidia.com/gpu but cluster c-m-gq000002 has no allocatable; "
        "its GPU pods stay Pending"
    )
    started = time.monotonic()
    operator.apply(gpu_stack(chart_repo_url))
    try:

        def warned() -> dict[str, Any] | None:
            status = operator.status()
            found = row(status).get("message", "").startswith(warning)
            return status if found and status.get("phase") == "Deploying" else None

        early = eventually("the GPU warning while Deploying", warned, timeout=HELM_TIMEOUT)
        waited = time.monotonic() - started
        assert waited < HELM_TIMEOUT / 2, waited
        assert row(early)["status"] == "Deploying"

        failed = operator.settled("Failed")
        final = row(failed)
        assert final["status"] == "Failed"
        assert final["message"].startswith(warning + "; "), final["message"]
        assert final["gpuRequests"] == 1
        assert final["gpuUtilization"] == "Unavailable"
        assert "no dcgm-exporter Service" in final["gpuUtilizationReason"]
        assert failed["clusterResources"] == [
            {"clusterId": "c-m-gq000002", "gpuCapacity": 0, "gpuAllocatable": 0}
        ]
        events = [e for e in operator.events() if e["reason"] == "GpuFit"]
        assert events and events[0]["type"] == "Warning", operator.events()
        print(f"GPU warning after {waited:.1f}s (helm timeout {HELM_TIMEOUT}s)")
        print(kubectl(operator.management.kubeconfig, "get", "stack", STACK, "-n", "default",
                      "-o", "yaml"))  # fmt: skip
    finally:
        kubectl(operator.management.kubeconfig, "delete", "stack", STACK, "-n", "default",
                "--wait=true", "--timeout=120s", check=False)  # fmt: skip
