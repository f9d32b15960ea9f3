"""`herd plan` and `herd apply` with `spec.rollout`, on three downstream clusters.

apply walks the stages in order: it stops at an approval gate (exit 4) with only the
canary written, goes on with `--approve canary`, waits out the soak pause after the
middle stage, and `--stage NAME` runs one stage (an unknown one is invalid input).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from e2e.testbed.controlplane import Cluster
from e2e.testbed.herd_cli import (
    chart,
    cleanup_fixture,  # noqa: F401  (fixture)
    herd,
    releases,
    unique,
)

SOAK = 3.0


def write_staged(path: Path, name: str, repo: str, ns: str, **spec: object) -> Path:
    body = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {
            "targets": {"clusterIds": ["one", "two", "three"]},
            "rollout": {
                "stages": [
                    {"name": "canary", "clusterIds": ["one"], "pause": "approval"},
                    {"name": "mid", "clusterIds": ["two"], "pause": f"{SOAK:.0f}s"},
                ]
            },
            "charts": [chart("web", repo, ns)],
            **spec,
        },
    }
    path.write_text(yaml.safe_dump(body))
    return path


def test_apply_walks_stages_and_stops_at_approval(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    one, two, three = downstream[:3]
    ns = unique("cli-stages")
    stack = write_staged(tmp_path / "stack.yaml", ns, chart_repo_url, ns)
    clusters = [
        *("--kubeconfig", f"{one.kubeconfig}=one"),
        *("--kubeconfig", f"{two.kubeconfig}=two"),
        *("--kubeconfig", f"{three.kubeconfig}=three"),
    ]
    cleanup(stack, clusters)
    home = tmp_path / "helm-home"

    done = herd("apply", "-f", stack, *clusters)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "WaitingForApproval" in done.stdout + done.stderr
    assert "web" in releases(one, ns, home)
    assert releases(two, ns, home) == releases(three, ns, home) == {}

    planned = herd("plan", "-f", stack, "--stage", "mid", *clusters)
    assert planned.returncode == 3, planned.stdout + planned.stderr
    assert "stage mid: two" in planned.stdout
    assert "three" not in planned.stdout.split("\n\n", 1)[0]

    assert herd("apply", "-f", stack, "--stage", "nope", *clusters).returncode == 2

    started = time.monotonic()
    done = herd("apply", "-f", stack, "--approve", "canary", *clusters)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert took >= SOAK, took  # the soak pause after stage mid was waited out
    assert "Paused" in done.stderr
    for cluster in (one, two, three):
        assert releases(cluster, ns, home)["web"]["status"] == "deployed"
    assert "rollout Complete" in done.stdout

    # --stage runs that stage alone: the canary takes a new config, the others wait.
    changed = write_staged(tmp_path / "changed.yaml", ns, chart_repo_url, ns)
    body = yaml.safe_load(changed.read_text())
    body["spec"]["charts"][0]["values"] = {"inline": {"message": "staged"}}
    changed.write_text(yaml.safe_dump(body))
    done = herd("apply", "-f", changed, "--stage", "canary", "-o", "json", *clusters)
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert [(s["name"], s["done"], s["total"]) for s in document["rollout"]["stages"]] == [
        ("canary", 1, 1),
        ("mid", 0, 1),
        ("remaining", 0, 1),
    ]
    assert str(releases(one, ns, home)["web"]["revision"]) == "2"
    assert str(releases(two, ns, home)["web"]["revision"]) == "1"
    assert str(releases(three, ns, home)["web"]["revision"]) == "1"
