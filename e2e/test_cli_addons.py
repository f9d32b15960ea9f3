"""`herd plan / apply --addons FILE` on the test bed: the operator's add-on configuration as
a file, the add-on stand-in charts (`core`, `suse-observability-agent`, the latter with
the real chart's schema for `stackstate.cluster.name`) from the fixture repository.

Facts are checked where they live: `helm ls` and `helm get values` on each cluster, and the
recording `helm` wrapper (`HERD_HELM`) of `e2e.test_cli` for "no helm call at all". The
add-on releases have fixed names and no Stack removes them (they are shared), so each
test starts and ends with none on the clusters it uses.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed.chartrepo import helm_binary, helm_env
from e2e.testbed.controlplane import Cluster
from e2e.testbed.herd_cli import (
    chart,
    helm_home_fixture,  # noqa: F401  (fixture)
    herd,
    recording_helm_fixture,  # noqa: F401  (fixture)
    releases,
    table,
    unique,
    write_stack,
)

AGENT_SCHEMA = re.compile(r"^[a-z0-9]([a-z0-9\-\.]*[a-z0-9])$")
ADDON_RELEASES = (
    ("cattle-neuvector-system", "neuvector"),
    ("suse-observability", "suse-observability-agent"),
)


def addons_file(path: Path, repo: str, api_key: str, password: str) -> Path:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "herd-addons", "namespace": "herd-system"},
        "data": {
            "neuvector.repo": repo,
            "observability.repo": repo,
            "neuvector.timeout": "2m",
            "observability.timeout": "2m",
            # No controller replica: nothing of NeuVector has to become ready here.
            "neuvector.values": "controller:\n  replicas: 0\n",
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "herd-addons", "namespace": "herd-system"},
        "stringData": {
            "stackstate.url": "https://observability.example.com/receiver/stsAgent",
            "stackstate.apiKey": api_key,
            "neuvector.password": password,
        },
    }
    path.write_text(yaml.safe_dump_all([configmap, secret]))
    return path


def addon_stack(path: Path, ns: str, cluster_ids: list[str], repo: str, **toggles: str) -> Path:
    """A Stack of one `web` chart with `toggles` (`security`, `observability`) set."""
    stack = write_stack(path, ns, {"clusterIds": cluster_ids}, chart("web", repo, ns))
    body = yaml.safe_load(stack.read_text())
    body["spec"] |= toggles
    stack.write_text(yaml.safe_dump(body))
    return stack


def helm_values(cluster: Cluster, namespace: str, release: str, home: Path) -> dict[str, Any]:
    out = subprocess.run(
        [helm_binary(), "get", "values", release, "-n", namespace, "-o", "json",
         "--kubeconfig", str(cluster.kubeconfig)],
        env=helm_env(home), capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    values: dict[str, Any] = json.loads(out)
    return values


def remove_addons(clusters: list[Cluster], home: Path) -> None:
    for cluster in clusters:
        for namespace, release in ADDON_RELEASES:
            subprocess.run(
                [helm_binary(), "uninstall", release, "-n", namespace, "--wait",
                 "--ignore-not-found", "--kubeconfig", str(cluster.kubeconfig)],
                env=helm_env(home), capture_output=True, check=True, timeout=120,
            )  # fmt: skip


@pytest.fixture
def no_addons(downstream: list[Cluster], tmp_path: Path) -> Iterator[list[Cluster]]:
    """The first two downstream clusters, with no add-on release before and after."""
    clusters, home = downstream[:2], tmp_path / "cleanup-home"
    remove_addons(clusters, home)
    yield clusters
    remove_addons(clusters, home)


PLANNED = [
    (cluster, name, "install")
    for cluster in ("GPU_West", "gpu-east")
    # herd-insights: Herd's dashboards and alerts beside the agent (observability)
    for name in ("neuvector", "suse-observability-agent", "herd-insights", "web")
]


def assert_plan_installs_everything(
    planned: subprocess.CompletedProcess[str], planned_json: subprocess.CompletedProcess[str]
) -> None:
    """`herd plan` (table and JSON): every add-on and the chart to install on both clusters."""
    assert planned.returncode == 3, planned.stdout + planned.stderr
    assert [(r["CLUSTER"], r["CHART"], r["ACTION"]) for r in table(planned.stdout)] == PLANNED
    document = json.loads(planned_json.stdout)
    assert [(r["cluster"], r["chart"], r["action"]) for r in document["releases"]] == PLANNED
    agent_row = next(r for r in document["releases"] if r["chart"] == "suse-observability-agent")
    assert agent_row["values"] == ["stackstate"]  # keys are shown, never their values


def assert_addons_deployed_first(applied: subprocess.CompletedProcess[str]) -> None:
    """`herd apply`: all Deployed, the add-ons finished before the user chart began."""
    assert applied.returncode == 0, applied.stdout + applied.stderr
    rows = table(applied.stdout)
    assert {(r["CLUSTER"], r["CHART"], r["STATUS"]) for r in rows} == {
        (c, n, "Deployed") for c, n, _ in PLANNED
    }
    for cluster in ("gpu-east", "GPU_West"):
        lines = applied.stderr.splitlines()
        web = next(i for i, line in enumerate(lines) if line.startswith(f"[{cluster}] web: "))
        for addon in ("neuvector", "suse-observability-agent"):
            done = next(
                i
                for i, line in enumerate(lines)
                if line.startswith(f"[{cluster}] {addon}: Deployed")
            )
            assert done < web, applied.stderr


def assert_values_reached_helm(
    cluster: Cluster, sent: str | None, helm_home: Path, api_key: str, password: str
) -> None:
    """The agent's cluster name (`sent`, or a valid one made from it) and both secrets."""
    values = helm_values(cluster, "suse-observability", "suse-observability-agent", helm_home)
    name = values["stackstate"]["cluster"]["name"]
    assert AGENT_SCHEMA.match(name), name
    assert name == sent if sent else name.startswith("gpu-west-"), name
    assert values["stackstate"]["apiKey"] == api_key  # it reached helm (on stdin)
    neuvector = helm_values(cluster, "cattle-neuvector-system", "neuvector", helm_home)
    assert neuvector["bootstrapPassword"] == password
    assert neuvector["controller"] == {"replicas": 0}


def test_plan_and_apply_with_addons_deploy_neuvector_and_the_agent_first(
    no_addons: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    helm_home: Path,
) -> None:
    east, west = no_addons
    api_key, password = f"sts-{uuid.uuid4().hex}", f"nv-{uuid.uuid4().hex}"
    addons = addons_file(tmp_path / "addons.yaml", chart_repo_url, api_key, password)
    ns = unique("cli-addons")
    stack = addon_stack(
        tmp_path / "stack.yaml",
        ns,
        ["gpu-east", "GPU_West"],
        chart_repo_url,
        security="enabled",
        observability="enabled",
    )
    # "GPU_West" is no name the agent's schema accepts: Herd must send a valid one.
    clusters = [
        *("--kubeconfig", f"{east.kubeconfig}=gpu-east"),
        *("--kubeconfig", f"{west.kubeconfig}=GPU_West"),
    ]
    with_addons = ["--addons", str(addons)]
    runs = []
    try:
        planned = herd("plan", "-f", stack, *clusters, *with_addons)
        planned_json = herd("plan", "-f", stack, *clusters, *with_addons, "-o", "json")
        applied = herd("apply", "-f", stack, *clusters, *with_addons)
        again = herd("plan", "-f", stack, *clusters, *with_addons, "-o", "json")
        runs = [planned, planned_json, applied, again]

        assert_plan_installs_everything(planned, planned_json)
        assert_addons_deployed_first(applied)
        assert json.loads(again.stdout)["changes"] is False, again.stdout
        assert again.returncode == 0, again.stdout + again.stderr
        for cluster, sent in ((east, "gpu-east"), (west, None)):
            assert_values_reached_helm(cluster, sent, helm_home, api_key, password)
            assert releases(cluster, ns, helm_home)["web"]["status"] == "deployed"
        for run in runs:
            for secret in (api_key, password):
                assert secret not in run.stdout + run.stderr
    finally:
        deleted = herd("delete", "-f", stack, *clusters, *with_addons)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert releases(east, ns, helm_home) == {}


@pytest.mark.parametrize(
    ("toggles", "messages"),
    [
        ({"security": "enabled"}, ["spec.security: security: enabled deploys NeuVector first"]),
        (
            {"security": "enabled", "observability": "enabled"},
            [
                "spec.security: security: enabled deploys NeuVector first",
                "spec.observability: observability: enabled deploys the SUSE Observability agent",
            ],
        ),
    ],
)
def test_a_stack_enabling_an_addon_without_addons_exits_2_with_no_helm_call(
    no_addons: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    helm_home: Path,
    recording_helm: tuple[dict[str, str], Path],
    toggles: dict[str, str],
    messages: list[str],
) -> None:
    env, helm_calls = recording_helm
    cluster = no_addons[0]
    ns = unique("cli-noaddons")
    stack = addon_stack(tmp_path / "stack.yaml", ns, ["one"], chart_repo_url, **toggles)
    one = ["--kubeconfig", f"{cluster.kubeconfig}=one"]

    for command in (["apply"], ["plan"], ["apply", "-o", "json"]):
        done = herd(*command, "-f", stack, *one, env=env)

        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stdout == ""
        for message in messages:
            assert message in done.stderr
        assert "give it with --addons FILE" in done.stderr
        assert "Traceback" not in done.stderr
    assert helm_calls.read_text() == ""
    assert releases(cluster, ns, helm_home) == {}
    for namespace, _ in ADDON_RELEASES:
        assert releases(cluster, namespace, helm_home) == {}


def test_an_unusable_addons_file_exits_2_with_no_helm_call(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    recording_helm: tuple[dict[str, str], Path],
) -> None:
    env, helm_calls = recording_helm
    api_key = f"sts-{uuid.uuid4().hex}"
    addons = addons_file(tmp_path / "addons.yaml", chart_repo_url, api_key, "pw-" + api_key)
    text = addons.read_text().replace("neuvector.timeout: 2m", "neuvector.timeout: soon")
    addons.write_text(text)
    ns = unique("cli-badaddons")
    stack = write_stack(
        tmp_path / "stack.yaml", ns, {"clusterIds": ["one"]}, chart("web", chart_repo_url, ns)
    )
    one = ["--kubeconfig", f"{downstream[0].kubeconfig}=one"]

    for command in ("apply", "plan", "delete"):
        done = herd(command, "-f", stack, *one, "--addons", addons, env=env)

        assert done.returncode == 2, done.stdout + done.stderr
        assert "not a usable add-on configuration" in done.stderr
        assert "key neuvector.timeout" in done.stderr
        assert api_key not in done.stdout + done.stderr
    assert helm_calls.read_text() == ""
