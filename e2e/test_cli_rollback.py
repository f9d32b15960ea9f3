"""`herd rollback STACK --stage S`: the CLI's fleet rollback, on two downstream clusters.

`herd apply` rolls a chain db <- api <- web out in two stages (canary, prod) and records the
last good revisions when each stage passes (in each cluster's `herd-system`, beside the
CLI's ownership record). A second configuration goes to the canary alone (`--stage
canary`); `herd rollback` then returns the canary to the first one, api before db (web
did not change), and prod is never touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from e2e.test_rollback import updated
from e2e.testbed.controlplane import Cluster
from e2e.testbed.faults import helm_json, history
from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_cli import (
    chart,
    cleanup_fixture,  # noqa: F401  (fixture)
    herd,
    unique,
)


def write(path: Path, name: str, repo: str, ns: str, generation: int) -> Path:
    moved = generation > 1
    charts: list[dict[str, Any]] = [
        chart("db", repo, ns, version="0.2.0" if moved else "0.1.0"),
        chart("api", repo, ns, dependsOn=["db"], values={"inline": {"message": f"v{generation}"}}),
        chart("web", repo, ns, dependsOn=["api"]),
    ]
    body = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {
            "targets": {"clusterIds": ["one", "two"]},
            "rollout": {
                "stages": [
                    {"name": "canary", "clusterIds": ["one"]},
                    {"name": "prod", "clusterIds": ["two"]},
                ],
                "onFailure": "Rollback",
            },
            "charts": charts,
        },
    }
    path.write_text(yaml.safe_dump(body))
    return path


def test_herd_rollback_returns_the_canary_to_its_last_good_revisions(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    one, two = downstream[:2]
    ns = unique("cli-rollback")
    first = write(tmp_path / "first.yaml", ns, chart_repo_url, ns, 1)
    second = write(tmp_path / "second.yaml", ns, chart_repo_url, ns, 2)
    clusters = [
        *("--kubeconfig", f"{one.kubeconfig}=one"),
        *("--kubeconfig", f"{two.kubeconfig}=two"),
    ]
    cleanup(first, clusters)

    done = herd("apply", "-f", first, *clusters)
    assert done.returncode == 0, done.stdout + done.stderr
    done = herd("apply", "-f", second, "--stage", "canary", *clusters)
    assert done.returncode == 0, done.stdout + done.stderr
    assert history(one.kubeconfig, ns, "db")[-1]["chart"] == "app-0.2.0"
    prod_before = {n: history(two.kubeconfig, ns, n) for n in ("db", "api", "web")}
    # The record is in the cluster's herd-system namespace, written by the CLI's user.
    records = json.loads(
        kubectl(one.kubeconfig, "get", "configmaps", "-n", "herd-system", "-o", "json")
    )
    assert any(c["metadata"]["name"].startswith("herd-lastgood-") for c in records["items"])

    assert herd("rollback", second, "--stage", "nope", *clusters).returncode == 2
    done = herd("rollback", second, "--stage", "canary", "-o", "json", *clusters)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["chart"]: r for r in json.loads(done.stdout)["releases"]}
    assert rows["api"]["action"] == rows["db"]["action"] == "rollback", rows
    assert rows["web"]["action"] == "nothing", rows
    for name in ("db", "api"):
        latest = history(one.kubeconfig, ns, name)[-1]
        assert (latest["chart"], latest["status"]) == ("app-0.1.0", "deployed"), latest
        assert "Rollback to 1" in latest["description"], latest
    values = helm_json(one.kubeconfig, "get", "values", "api", "-n", ns) or {}
    assert values.get("message") == "v1"
    api_at = updated(history(one.kubeconfig, ns, "api")[-1])
    assert api_at <= updated(history(one.kubeconfig, ns, "db")[-1])  # dependents first
    assert {n: history(two.kubeconfig, ns, n) for n in ("db", "api", "web")} == prod_before
