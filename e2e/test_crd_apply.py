"""The generated CRD on a real API server: it installs, and obviously bad Stacks are
rejected at `kubectl apply` time, before the controller ever sees them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl_run, wait_established

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def api(management: BedCluster) -> BedCluster:
    done = kubectl_run(management, "apply", "-f", str(ROOT / "crds"))
    assert done.returncode == 0, done.stderr
    wait_established(management, "stacks.herd.suse.com")
    return management


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    loaded["metadata"]["namespace"] = "default"
    return loaded


def apply(api: BedCluster, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl_run(api, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(body))


@pytest.mark.parametrize("name", ["rag-inference-platform", "production-ai-platform", "test-stack"])
def test_examples_are_accepted(api: BedCluster, name: str) -> None:
    done = apply(api, example(name))
    assert done.returncode == 0, done.stderr


def test_yaml_booleans_are_accepted_for_toggles(api: BedCluster) -> None:
    body = example("ollama-simple")
    body["spec"]["security"] = True
    body["spec"]["observability"] = False
    done = apply(api, body)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("mutate", "complaint"),
    [
        (lambda s: s["charts"][0].update(repo="ftp://charts.example.com"), "spec.charts[0].repo"),
        (lambda s: s["charts"][0].update(timeout="15 minutes"), "spec.charts[0].timeout"),
        (lambda s: s["charts"][0].update(name="Not_A_Label"), "spec.charts[0].name"),
        (lambda s: s.pop("charts"), "spec.charts: Required value"),
        (lambda s: s.update(charts=[]), "spec.charts"),
        (lambda s: s["charts"][0].update(wait="sometimes"), "spec.charts[0].wait"),
    ],
)
def test_bad_stacks_are_rejected_at_apply(api: BedCluster, mutate: Any, complaint: str) -> None:
    body = example("ollama-simple")
    mutate(body["spec"])
    done = apply(api, body)
    assert done.returncode != 0
    assert complaint in done.stderr, done.stderr


def test_printer_columns(api: BedCluster) -> None:
    done = kubectl_run(
        api,
        "get",
        "crd",
        "stacks.herd.suse.com",
        "-o",
        "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}",
    )
    assert done.stdout.split() == ["Phase", "Clusters", "Charts", "Stage", "Drifted", "Age"]
    explained = kubectl_run(api, "explain", "stack.spec.charts.dependsOn")
    assert "must be deployed first" in explained.stdout, explained.stderr
