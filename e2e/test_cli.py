"""`herd apply / plan` as a CI pipeline runs them: subprocesses of the
installed `herd`, on the test bed's downstream clusters, charts from the fixture repo.

Facts are checked where they live: releases with `helm ls` on each cluster, "no helm
write" by helm revisions and by a recording `helm` wrapper (`HERD_HELM`) that logs every
helm process Herd starts. Each test uses its own namespace and Stack name, so it shares
the session's clusters with other tests, and deletes what it deployed.

Here: apply to a selected cluster, plan writing nothing, a failing chart, an invalid Stack
and bad cluster options (exit codes), values from a Secret never shown. JSON output,
`status`, `delete` and operator releases are `e2e/test_cli_status.py`; the shared helpers
and fixtures are `e2e.testbed.herd_cli`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed.controlplane import Cluster
from e2e.testbed.herd_cli import (
    chart,
    cleanup_fixture,  # noqa: F401  (fixture)
    helm_home_fixture,  # noqa: F401  (fixture)
    herd,
    recording_helm_fixture,  # noqa: F401  (fixture)
    releases,
    table,
    unique,
    write_stack,
)


@pytest.mark.helm3
def test_apply_to_two_clusters_changes_only_the_selected_one(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    helm_home: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    one, two = downstream[:2]
    ns = unique("cli-select")
    stack = write_stack(
        tmp_path / "stack.yaml",
        ns,
        {"selector": {"matchLabels": {"herd.test/cli": ns}}},
        chart("web", chart_repo_url, ns),
    )
    clusters = [
        *("--kubeconfig", f"{one.kubeconfig}=one"),
        *("--kubeconfig", f"{two.kubeconfig}=two"),
        *("--label", f"one:herd.test/cli={ns}"),
    ]
    cleanup(stack, clusters)

    done = herd("apply", "-f", stack, *clusters)

    assert done.returncode == 0, done.stdout + done.stderr
    rows = [(r["CLUSTER"], r["CHART"], r["STATUS"], r["REVISION"]) for r in table(done.stdout)]
    assert rows == [("one", "web", "Deployed", "1")]
    assert "[one] web: Deployed revision 1, installed" in done.stderr  # plain progress lines
    assert releases(one, ns, helm_home)["web"]["status"] == "deployed"
    assert releases(two, ns, helm_home) == {}

    deleted = herd("delete", "-f", stack, *clusters)

    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert [(r["CLUSTER"], r["STATUS"]) for r in table(deleted.stdout)] == [("one", "Uninstalled")]
    assert releases(one, ns, helm_home) == {}


def test_plan_shows_exactly_what_changes_and_writes_nothing(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    helm_home: Path,
    recording_helm: tuple[dict[str, str], Path],
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    cluster = downstream[0]
    env, helm_calls = recording_helm
    ns = unique("cli-plan")
    charts = [
        chart("front", chart_repo_url, ns, values={"inline": {"message": "one"}}),
        chart("back", chart_repo_url, ns, dependsOn=["front"]),
    ]
    stack = write_stack(tmp_path / "stack.yaml", ns, {"clusterIds": ["one"]}, *charts)
    clusters = ["--kubeconfig", f"{cluster.kubeconfig}=one"]
    cleanup(stack, clusters)

    before = herd("plan", "-f", stack, *clusters, env=env)

    assert before.returncode == 3, before.stdout + before.stderr
    assert [(r["CHART"], r["ACTION"]) for r in table(before.stdout)] == [
        ("front", "install"),
        ("back", "install"),
    ]
    assert "values: message" in table(before.stdout)[0]["DETAIL"]
    assert releases(cluster, ns, helm_home) == {}
    applied = herd("apply", "-f", stack, *clusters)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    deployed = releases(cluster, ns, helm_home)

    unchanged = herd("plan", "-f", stack, *clusters, env=env)

    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert {(r["CHART"], r["ACTION"]) for r in table(unchanged.stdout)} == {
        ("front", "unchanged"),
        ("back", "unchanged"),
    }

    charts[1]["values"] = {"inline": {"replicaCount": 2}}
    write_stack(stack, ns, {"clusterIds": ["one"]}, *charts)
    edited = herd("plan", "-f", stack, *clusters, env=env)

    assert edited.returncode == 3, edited.stdout + edited.stderr
    rows = {(r["CHART"], r["ACTION"], r["REVISION"], r["DETAIL"]) for r in table(edited.stdout)}
    assert rows == {
        ("front", "unchanged", "1", "-"),
        ("back", "upgrade", "1", "values or chart source changed"),
    }
    assert helm_calls.read_text() == ""  # plans start no helm process at all
    assert releases(cluster, ns, helm_home) == deployed  # same revisions, same update times


@pytest.mark.helm3
def test_failing_chart_exits_1_with_helms_error_in_the_table(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    ns = unique("cli-broken")
    stack = write_stack(
        tmp_path / "stack.yaml",
        ns,
        {"clusterIds": ["one"]},
        chart("bad", chart_repo_url, ns, chart="broken"),
        chart("after-bad", chart_repo_url, ns, dependsOn=["bad"]),
        chart("alone", chart_repo_url, ns),
    )
    clusters = ["--kubeconfig", f"{downstream[0].kubeconfig}=one"]
    cleanup(stack, clusters)

    done = herd("apply", "-f", stack, *clusters)

    assert done.returncode == 1, done.stdout + done.stderr
    rows = {r["CHART"]: (r["STATUS"], r["MESSAGE"]) for r in table(done.stdout)}
    assert rows["bad"][0] == "Failed" and "broken.mustSet is required" in rows["bad"][1]
    assert rows["after-bad"] == ("Skipped", "dependency bad failed")
    assert rows["alone"] == ("Deployed", "installed")
    assert "2 of 3 releases not deployed" in done.stdout


@pytest.mark.parametrize(
    ("case", "extra", "error"),
    [
        ("unknown dependency", {"dependsOn": ["nope"]}, "spec.charts[0].dependsOn[0]"),
        (
            "values from a Secret, no cluster to read it from",
            {"values": {"from": [{"kind": "Secret", "name": "web-values"}]}},
            "spec.charts[0].values.from[0]: Secret ci/web-values cannot be read",
        ),
        ("chart is a flag", {"chart": "--help"}, "spec.charts[0].chart: must be a chart name"),
        (
            "chart smuggles a flag",
            {"chart": "--repo=http://127.0.0.1:1"},
            "spec.charts[0].chart: must be a chart name",
        ),
        ("version is a flag", {"version": "--devel"}, "spec.charts[0].version: must be"),
    ],
)
def test_invalid_stack_exits_2_before_any_helm_call(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    helm_home: Path,
    recording_helm: tuple[dict[str, str], Path],
    case: str,
    extra: dict[str, Any],
    error: str,
) -> None:
    env, helm_calls = recording_helm
    ns = unique("cli-invalid")
    web = chart("web", chart_repo_url, ns, **extra)
    stack = write_stack(tmp_path / "stack.yaml", ns, {"clusterIds": ["one"]}, web)
    one = f"{downstream[0].kubeconfig}=one"

    for command in ("apply", "plan"):
        done = herd(command, "-f", stack, "--kubeconfig", one, env=env)

        assert done.returncode == 2, case + done.stdout + done.stderr
        assert error in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""
    if "flag" in case:
        checked = herd("validate", "-f", stack)
        assert checked.returncode == 2 and error in checked.stdout, checked.stdout
    assert helm_calls.read_text() == ""
    assert releases(downstream[0], ns, helm_home) == {}


def test_bad_cluster_options_exit_2(tmp_path: Path, downstream: list[Cluster]) -> None:
    stack = write_stack(
        tmp_path / "stack.yaml", "x", {"clusterIds": ["one"]}, chart("web", "https://e.x", "x")
    )
    one = f"{downstream[0].kubeconfig}=one"

    unknown_label = herd("apply", "-f", stack, "--kubeconfig", one, "--label", "two:a=b")
    missing_file = herd("apply", "-f", stack, "--kubeconfig", str(tmp_path / "nope.yaml"))
    no_cluster = herd("apply", "-f", stack)

    assert unknown_label.returncode == 2 and "no cluster 'two'" in unknown_label.stderr
    assert missing_file.returncode == 2 and "not found" in missing_file.stderr
    assert no_cluster.returncode == 2 and "no cluster given" in no_cluster.stderr


def test_values_from_a_secret_are_read_from_the_values_cluster_and_never_shown(
    management: Cluster,
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    ns = unique("cli-values")
    secret_value = f"from-secret-{uuid.uuid4().hex}"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ci"}}
    assert management.api.post("/api/v1/namespaces", namespace).status in (201, 409)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ns, "namespace": "ci"},
        "stringData": {"values.yaml": f"message: {secret_value}"},
    }
    assert management.api.post("/api/v1/namespaces/ci/secrets", secret).status == 201
    values = {"from": [{"kind": "Secret", "name": ns}]}
    web = chart("web", chart_repo_url, ns, values=values)
    stack = write_stack(tmp_path / "stack.yaml", ns, {"clusterIds": ["one"]}, web)
    clusters = ["--kubeconfig", f"{downstream[0].kubeconfig}=one"]
    cleanup(stack, clusters)
    from_management = ["--values-kubeconfig", str(management.kubeconfig)]

    planned = herd("plan", "-f", stack, *clusters, *from_management)
    applied = herd("apply", "-f", stack, *clusters, *from_management, "-o", "json")

    assert planned.returncode == 3, planned.stdout + planned.stderr
    assert "values: message" in table(planned.stdout)[0]["DETAIL"]
    assert applied.returncode == 0, applied.stdout + applied.stderr
    configmap = downstream[0].api.get(f"/api/v1/namespaces/{ns}/configmaps/web").body
    assert configmap["data"]["message"] == secret_value
    for output in (planned, applied):
        assert secret_value not in output.stdout + output.stderr
