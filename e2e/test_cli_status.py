"""`herd apply -o json / status / delete` as a CI pipeline runs them: subprocesses of the
installed `herd`, on the test bed's downstream clusters, charts from the fixture repo.

JSON output matching the table, `status` listing Herd's releases and `delete` removing
them, and an operator's release refused unless `--force`. Facts are checked where they
live (releases with `helm ls` on each cluster). Each test uses its own namespace and Stack
name and deletes what it deployed. The helpers and fixtures are `e2e.testbed.herd_cli`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from e2e.testbed.chartrepo import helm_binary, helm_env
from e2e.testbed.controlplane import Cluster
from e2e.testbed.herd_cli import (
    chart,
    cleanup_fixture,  # noqa: F401  (fixture)
    helm_home_fixture,  # noqa: F401  (fixture)
    herd,
    releases,
    table,
    unique,
    write_stack,
)


def test_json_output_parses_and_matches_the_table(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    ns = unique("cli-json")
    stack = write_stack(
        tmp_path / "stack.yaml",
        ns,
        {"clusterIds": ["one", "two"]},
        chart("web", chart_repo_url, ns),
        chart("api", chart_repo_url, ns, version="0.2.0", dependsOn=["web"]),
    )
    clusters = [
        *("--kubeconfig", f"{downstream[0].kubeconfig}=one"),
        *("--kubeconfig", f"{downstream[1].kubeconfig}=two"),
    ]
    cleanup(stack, clusters)

    as_json = herd("apply", "-f", stack, *clusters, "--output", "json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    document = json.loads(as_json.stdout)
    as_table = herd("apply", "-f", stack, *clusters)  # again: every release unchanged
    assert as_table.returncode == 0, as_table.stdout + as_table.stderr

    assert document["stack"] == {"namespace": "ci", "name": ns}
    assert document["phase"] == "Deployed"
    assert document["targets"] == ["one", "two"]
    assert document["skipped"] == []
    columns = ("cluster", "chart", "release", "namespace", "status", "revision", "version")
    from_json = [tuple(str(r[c]) for c in columns) for r in document["releases"]]
    from_table = [tuple(r[c.upper()] for c in columns) for r in table(as_table.stdout)]
    assert from_json == from_table
    assert from_json == [
        ("one", "web", "web", ns, "Deployed", "1", "0.1.0"),
        ("one", "api", "api", ns, "Deployed", "1", "0.2.0"),
        ("two", "web", "web", ns, "Deployed", "1", "0.1.0"),
        ("two", "api", "api", ns, "Deployed", "1", "0.2.0"),
    ]
    assert [r["message"] for r in document["releases"]] == ["installed"] * 4
    assert {r["MESSAGE"] for r in table(as_table.stdout)} == {"unchanged"}

    plan_json = json.loads(herd("plan", "-f", stack, *clusters, "-o", "json").stdout)
    plan_table = table(herd("plan", "-f", stack, *clusters).stdout)
    assert plan_json["changes"] is False
    assert [(r["cluster"], r["chart"], r["action"]) for r in plan_json["releases"]] == [
        (r["CLUSTER"], r["CHART"], r["ACTION"]) for r in plan_table
    ]


@pytest.mark.helm3
def test_status_lists_herd_releases_and_delete_removes_them(
    downstream: list[Cluster], chart_repo_url: str, tmp_path: Path, helm_home: Path
) -> None:
    ns = unique("cli-status")
    stack = write_stack(
        tmp_path / "stack.yaml",
        ns,
        {"clusterIds": ["one"]},
        chart("web", chart_repo_url, ns),
        chart("api", chart_repo_url, ns, dependsOn=["web"]),
    )
    clusters = [
        *("--kubeconfig", f"{downstream[0].kubeconfig}=one"),
        *("--kubeconfig", f"{downstream[1].kubeconfig}=two"),
    ]
    assert herd("apply", "-f", stack, *clusters).returncode == 0

    status = herd("status", "-f", stack, *clusters)
    status_json = json.loads(herd("status", "-f", stack, *clusters, "-o", "json").stdout)

    assert status.returncode == 0, status.stdout + status.stderr
    rows = [(r["CLUSTER"], r["STACK"], r["RELEASE"], r["STATUS"]) for r in table(status.stdout)]
    assert rows == [("one", f"ci.{ns}", "api", "deployed"), ("one", f"ci.{ns}", "web", "deployed")]
    from_json = [
        (r["cluster"], r["stack"], r["release"], r["status"]) for r in status_json["releases"]
    ]
    assert from_json == rows

    deleted = herd("delete", "-f", stack, *clusters)
    again = herd("delete", "-f", stack, *clusters)

    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert {(r["CHART"], r["STATUS"]) for r in table(deleted.stdout)} == {
        ("web", "Uninstalled"),
        ("api", "Uninstalled"),
    }
    assert releases(downstream[0], ns, helm_home) == {}
    assert again.returncode == 0 and "Nothing to uninstall" in again.stdout
    assert table(herd("status", "-f", stack, *clusters).stdout) == []


def test_apply_refuses_an_operator_release_unless_forced(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    helm_home: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    one = downstream[0]
    ns = unique("cli-faces")
    stack = write_stack(
        tmp_path / "stack.yaml", ns, {"clusterIds": ["one"]}, chart("web", chart_repo_url, ns)
    )
    clusters = ["--kubeconfig", f"{one.kubeconfig}=one"]
    # The release as the operator installs it for this Stack (ci/<ns>).
    subprocess.run(
        [
            helm_binary(),
            *("upgrade", "--install", "web", "app", "--repo", chart_repo_url, "--version=0.1.0"),
            *("--namespace", ns, "--create-namespace", "--kubeconfig", str(one.kubeconfig)),
            f"--labels=herd.suse.com/stack=ci.{ns},herd.suse.com/managed-by=operator",
        ],
        env=helm_env(helm_home),
        capture_output=True,
        check=True,
    )

    refused = herd("apply", "-f", stack, *clusters)

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "managed by the Herd operator; use --force to take it over" in refused.stdout
    assert releases(one, ns, helm_home)["web"]["revision"] == "1"

    forced = herd("apply", "--force", "-f", stack, *clusters)
    cleanup(stack, clusters)

    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert releases(one, ns, helm_home)["web"]["revision"] == "2"
