"""Drift in `herd plan` and `herd status -f` (the CLI face), on a test-bed cluster.

A Stack applied with `herd apply`, a Deployment scaled by hand: `herd plan` shows the
field a correction would change and writes nothing; `herd status -f` shows the drift.
The operator's drift: `e2e/test_drift.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl

APP = "web"
REPLICAS = "/spec/replicas"


def test_herd_plan_and_status_show_the_fields_a_correction_would_change(
    downstream: list[BedCluster], chart_repo_url: str, tmp_path: Path
) -> None:
    cluster, ns = downstream[1], "cli-drift"
    chart = {"name": APP, "chart": "app", "repo": chart_repo_url, "version": "0.1.0"}
    stack = tmp_path / "stack.yaml"
    spec = {"targets": {"clusterIds": ["two"]}, "charts": [{**chart, "namespace": ns}]}
    stack.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "herd.suse.com/v1",
                "kind": "Stack",
                "metadata": {"name": "cli-drift", "namespace": "ci"},
                "spec": {**spec, "drift": {"mode": "Correct"}},
            }
        )
    )
    clusters = ["--kubeconfig", f"{cluster.kubeconfig}=two"]
    try:
        applied = _herd("apply", "-f", str(stack), *clusters)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        clean = _herd("plan", "-f", str(stack), *clusters)
        assert clean.returncode == 0 and "drift:" not in clean.stdout, clean.stdout
        kubectl(cluster.kubeconfig, "scale", "deployment", APP, "-n", ns, "--replicas=4")

        planned = _herd("plan", "-f", str(stack), *clusters)

        assert f"drift: Deployment/{APP}: {REPLICAS}" in planned.stdout, planned.stdout
        status = _herd("status", "-f", str(stack), *clusters)
        assert f"Deployment/{APP}: {REPLICAS}" in status.stdout, status.stdout + status.stderr
        deployment = json.loads(
            kubectl(cluster.kubeconfig, "get", "deployment", APP, "-n", ns, "-o", "json")
        )
        assert deployment["spec"]["replicas"] == 4  # a plan writes nothing
    finally:
        _herd("delete", "-f", str(stack), *clusters)


def _herd(*args: str) -> subprocess.CompletedProcess[str]:
    herd = Path(sys.executable).parent / "herd"
    return subprocess.run(
        [str(herd), *args], capture_output=True, text=True, check=False, timeout=300
    )
