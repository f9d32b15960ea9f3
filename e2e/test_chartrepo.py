"""The fixture chart repository: what it serves, and that each chart renders as intended.

Needs the real helm binary and loopback HTTP only, no API server. Other e2e tests rely on
these properties (``broken`` fails before touching a cluster, ``never-ready`` can never be
scheduled, the add-on stand-ins take the real charts' values), so they are checked here
where a failure points at the fixture rather than at Herd.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed.chartrepo import ChartRepo, helm_binary, helm_env
from e2e.testbed.fixture_charts import CATALOG, FixtureChart

pytestmark = pytest.mark.helm3  # fast (no API server): the whole module runs on both helms
REPO_ROOT = Path(__file__).resolve().parent.parent

# Charts that must not render with their defaults; each has its own test below.
NEEDS_VALUES = {"broken", "suse-observability-agent"}

EXPECTED_KINDS: dict[str, set[str]] = {
    "app": {"ConfigMap", "Deployment", "Service"},
    "with-crd": {"Widget"},
    "gadgets": {"ConfigMap", "Gadget"},
    "with-hook": {"Deployment", "Job"},
    "with-test": {"Deployment", "Pod"},  # its `helm test` hook is a Pod
    "slow": {"ConfigMap"},
}
DEPLOYMENT_AND_SERVICE = {"Deployment", "Service"}

AGENT_VALUES = {
    "stackstate": {
        "cluster": {"name": "c-m-abcd1234"},
        "url": "https://observability.example.com/receiver/stsAgent",
        "apiKey": "not-a-real-key",
    }
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    with ChartRepo.start(tmp_path_factory.mktemp("chartrepo")) as running:
        yield running


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


def helm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], env=helm_env(home), capture_output=True, text=True, check=False
    )


def render(
    repo: ChartRepo,
    home: Path,
    chart: FixtureChart,
    *extra: str,
    release: str = "rel",
    values: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``helm template`` a packaged fixture chart; the rendered documents, or fail the test."""
    args = ["template", release, str(repo.archive(chart.name, chart.version)), *extra]
    if values is not None:
        values_file = home / f"values-{chart.name}-{release}.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["--values", str(values_file)]
    result = helm(home, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def chart_named(name: str, version: str | None = None) -> FixtureChart:
    matches = [c for c in CATALOG if c.name == name and version in (None, c.version)]
    assert len(matches) == 1
    return matches[0]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def test_index_lists_every_fixture_chart_version(repo: ChartRepo) -> None:
    index = yaml.safe_load(fetch(f"{repo.url}/index.yaml"))

    served = {(e["name"], e["version"]) for entries in index["entries"].values() for e in entries}

    assert served == {(c.name, c.version) for c in CATALOG}
    assert ("app", "0.1.0") in served
    assert ("app", "0.2.0") in served


def test_every_index_entry_downloads_as_a_chart_archive(repo: ChartRepo) -> None:
    index = yaml.safe_load(fetch(f"{repo.url}/index.yaml"))

    for entries in index["entries"].values():
        for entry in entries:
            (url,) = entry["urls"]
            assert fetch(f"{repo.url}/{url}")[:2] == b"\x1f\x8b", url  # gzip magic


@pytest.mark.parametrize(
    "chart",
    [c for c in CATALOG if c.name not in NEEDS_VALUES],
    ids=lambda c: f"{c.name}-{c.version}",
)
def test_chart_renders_with_default_values(
    repo: ChartRepo, helm_home: Path, chart: FixtureChart
) -> None:
    docs = render(repo, helm_home, chart)

    assert {d["kind"] for d in docs} == EXPECTED_KINDS.get(chart.name, DEPLOYMENT_AND_SERVICE)


def test_app_versions_ship_different_images_and_report_their_version(
    repo: ChartRepo, helm_home: Path
) -> None:
    rendered = {
        version: render(repo, helm_home, chart_named("app", version))
        for version in ("0.1.0", "0.2.0")
    }

    for version, docs in rendered.items():
        container = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"registry.example.com/herd/app:{version}"
        assert only(docs, "ConfigMap")["data"]["chartVersion"] == version


def test_app_takes_message_replicas_and_resources_from_values(
    repo: ChartRepo, helm_home: Path
) -> None:
    resources = {"requests": {"cpu": "10m"}}
    docs = render(
        repo,
        helm_home,
        chart_named("app", "0.1.0"),
        values={"message": "from a test", "replicaCount": 2, "resources": resources},
    )

    deployment = only(docs, "Deployment")
    assert only(docs, "ConfigMap")["data"]["message"] == "from a test"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"] == resources


def test_two_app_releases_share_no_resource_names_or_selectors(
    repo: ChartRepo, helm_home: Path
) -> None:
    app = chart_named("app", "0.1.0")
    one = render(repo, helm_home, app, release="one")
    two = render(repo, helm_home, app, release="two")

    def names(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in docs}

    def selector(docs: list[dict[str, Any]]) -> dict[str, str]:
        labels: dict[str, str] = only(docs, "Deployment")["spec"]["selector"]["matchLabels"]
        return labels

    assert not names(one) & names(two)
    assert selector(one) != selector(two)


def test_with_crd_ships_the_widget_crd(repo: ChartRepo, helm_home: Path) -> None:
    docs = render(repo, helm_home, chart_named("with-crd"), "--include-crds")

    crd = only(docs, "CustomResourceDefinition", "widgets.fixtures.herd.test")
    widget = only(docs, "Widget")
    assert crd["spec"]["group"] == "fixtures.herd.test"
    assert widget["apiVersion"] == "fixtures.herd.test/v1alpha1"


def test_with_hook_job_is_a_pre_install_hook_deleted_on_success(
    repo: ChartRepo, helm_home: Path
) -> None:
    docs = render(repo, helm_home, chart_named("with-hook"))

    annotations = only(docs, "Job")["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install"
    assert annotations["helm.sh/hook-delete-policy"] == "hook-succeeded"


def test_never_ready_pod_selects_a_node_label_no_node_has(repo: ChartRepo, helm_home: Path) -> None:
    docs = render(repo, helm_home, chart_named("never-ready"))

    pod_spec = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"herd.test/never": "true"}


def test_broken_fails_to_render_with_its_message(repo: ChartRepo, helm_home: Path) -> None:
    result = helm(helm_home, "template", "rel", str(repo.archive("broken", "0.1.0")))

    assert result.returncode != 0
    assert "broken.mustSet is required" in result.stderr


@pytest.mark.parametrize(
    ("missing", "values"),
    [
        ("stackstate.cluster.name", {"stackstate": {"url": "https://o.example.com"}}),
        ("stackstate.url", {"stackstate": {"cluster": {"name": "c-m-abcd1234"}}}),
    ],
)
def test_observability_agent_requires_cluster_name_and_url(
    repo: ChartRepo, helm_home: Path, tmp_path: Path, missing: str, values: dict[str, Any]
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    archive = repo.archive("suse-observability-agent", "1.2.16")

    result = helm(helm_home, "template", "rel", str(archive), "--values", str(values_file))

    assert result.returncode != 0
    assert f"{missing} is required" in result.stderr


def test_observability_agent_renders_key_secret_and_labelled_cluster_agent(
    repo: ChartRepo, helm_home: Path
) -> None:
    docs = render(
        repo,
        helm_home,
        chart_named("suse-observability-agent"),
        "--namespace",
        "suse-observability",
        values={**AGENT_VALUES, "nodeAgent": {"skipKubeletTLSVerify": True}},
    )

    secret = only(docs, "Secret")
    agent = only(docs, "Deployment")
    assert base64.b64decode(secret["data"]["sts-api-key"]) == b"not-a-real-key"
    assert agent["metadata"]["labels"]["observability.herd.test/cluster-name"] == "c-m-abcd1234"
    assert {d["metadata"]["namespace"] for d in docs} == {"suse-observability"}


def test_neuvector_stand_in_takes_real_chart_values_and_uses_real_names(
    repo: ChartRepo, helm_home: Path
) -> None:
    real_chart_values = {
        "registry": "registry.example.com",
        "tag": "5.4.4",
        "imagePullSecrets": "regsecret",
        "k3s": {"enabled": True},
        "containerd": {"enabled": False},
        "controller": {"replicas": 1, "apisvc": {"type": "ClusterIP"}},
        "enforcer": {"enabled": True},
        "manager": {"enabled": False},
        "cve": {"scanner": {"enabled": False}},
    }
    docs = render(
        repo,
        helm_home,
        chart_named("core"),
        "--namespace",
        "neuvector",
        values=real_chart_values,
    )

    only(docs, "Deployment", "neuvector-controller-pod")
    service = only(docs, "Service", "neuvector-svc-controller")
    api_service = only(docs, "Service", "neuvector-svc-controller-api")
    assert 10443 in {p["port"] for p in service["spec"]["ports"]}
    assert [p["port"] for p in api_service["spec"]["ports"]] == [10443]
    assert {d["metadata"]["namespace"] for d in docs} == {"neuvector"}


def test_stand_ins_accept_example_stack_values_but_request_no_gpus(
    repo: ChartRepo, helm_home: Path
) -> None:
    # From the README's RAG example: a GPU request would leave the pod Pending on fake nodes.
    example_values = {
        "replicaCount": 3,
        "resources": {"requests": {"nvidia.com/gpu": 1, "memory": "16Gi"}},
        "persistence": {"enabled": True, "size": "100Gi"},
    }
    docs = render(repo, helm_home, chart_named("ollama", "0.59.0"), values=example_values)

    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert "resources" not in deployment["spec"]["template"]["spec"]["containers"][0]


def test_helm_pull_fetches_a_chart_over_http(
    repo: ChartRepo, helm_home: Path, tmp_path: Path
) -> None:
    repo.clear_requests()

    result = helm(
        helm_home, "pull", "app", "--repo", repo.url, "--version", "0.2.0", "-d", str(tmp_path)
    )

    assert result.returncode == 0, result.stderr
    pulled = tmp_path / "app-0.2.0.tgz"
    assert pulled.read_bytes() == repo.archive("app", "0.2.0").read_bytes()
    assert repo.requests == ["/index.yaml", "/app-0.2.0.tgz"]


def test_helm_resolves_repo_charts_as_install_does(repo: ChartRepo, helm_home: Path) -> None:
    # `helm template --repo` resolves the chart like `helm upgrade --install --repo`.
    result = helm(
        helm_home, "template", "rel", "never-ready", "--repo", repo.url, "--version", "0.1.0"
    )

    assert result.returncode == 0, result.stderr
    assert "herd.test/never" in result.stdout


def test_serve_command_publishes_its_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "chartrepo.url"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "e2e.testbed.chartrepo",
            "serve",
            "--dir",
            str(tmp_path / "work"),
            "--port-file",
            str(port_file),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = wait_for_url(port_file, server)
        assert url.startswith("http://127.0.0.1:")
        assert b"suse-observability-agent" in fetch(f"{url}/index.yaml")
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=10)

    assert server.returncode == 0, output
    assert not port_file.exists()


def wait_for_url(port_file: Path, server: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        assert server.poll() is None, f"serve exited early: {server.communicate()[0]}"
        assert time.monotonic() < deadline, "serve never wrote its URL"
        time.sleep(0.1)
    return port_file.read_text().strip()
