"""install/: the plain manifests and Herd's own Helm chart are accepted by an API server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from e2e.testbed.controlplane import Cluster as BedCluster

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "install" / "helm" / "herd"
HELM = str(Path(sys.executable).parent / "helm")


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ensure_namespaces(kubeconfig: str, *names: str) -> None:
    for name in names:  # "already exists" is fine
        subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "create", "namespace", name],
            capture_output=True,
            check=False,
        )


def test_chart_lints_and_renders_objects_the_api_server_accepts(management: BedCluster) -> None:
    run(HELM, "lint", str(CHART))
    rendered = run(
        HELM,
        "template",
        "herd",
        str(CHART),
        "-n",
        "herd-system",
        "--include-crds",
        "--set",
        "rancherNamespaces={fleet-default}",
    )
    kubeconfig = str(management.kubeconfig)
    ensure_namespaces(kubeconfig, "herd-system", "fleet-default")
    out = run(
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=rendered,
    )
    for kind in ("customresourcedefinition", "deployment", "clusterrole", "role", "service"):
        assert kind in out, out


def test_plain_manifests_apply(management: BedCluster) -> None:
    kubeconfig = str(management.kubeconfig)
    run("kubectl", "--kubeconfig", kubeconfig, "apply", "-f", str(ROOT / "crds"))
    ensure_namespaces(kubeconfig, "fleet-default")
    out = run(
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "apply",
        "--dry-run=server",
        "-f",
        str(ROOT / "install"),
    )
    assert "deployment.apps/herd-controller" in out
