"""Add-on configuration and catalog: ConfigMap/Secret parsing, charts, per-cluster values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from herd.addons.catalog import AddonCatalog
from herd.addons.config import (
    AddonConfigError,
    Credentials,
    default_config,
    parse_config,
    parse_secret,
)
from herd.api import StackSpec
from herd.errors import SpecError, TransientError
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.desired import plan_stack
from herd.status.facts import AGENT, NEUVECTOR, FailOn

SAMPLE = Path(__file__).parent.parent / "examples" / "addons-config.yaml.sample"
SECRET = {"stackstate.url": "https://sts.example.com", "stackstate.apiKey": "key-123"}


def spec(security: bool = False, observability: bool = False) -> StackSpec:
    return StackSpec.model_validate(
        {
            "security": security,
            "observability": observability,
            "targets": {"clusterIds": ["c-m-1"]},
            "charts": [{"name": "app", "repo": "https://charts.example.com", "version": "1.0.0"}],
        }
    )


def cluster(cluster_id: str = "c-m-abc12", name: str = "gpu-prod-1") -> Cluster:
    return Cluster(
        id=cluster_id,
        name=name,
        labels={},
        ready=True,
        source="file",
        kubeconfig=KubeconfigRef.file(Path("/dev/null")),
    )


def test_defaults_are_the_issues() -> None:
    config = default_config()
    assert (config.neuvector.repo, config.neuvector.chart_name) == (
        "https://neuvector.github.io/neuvector-helm/",
        "core",
    )
    assert (config.neuvector.namespace, config.neuvector.release) == (
        "cattle-neuvector-system",
        "neuvector",
    )
    assert (config.agent.repo, config.agent.chart_name) == (
        "https://charts.rancher.com/server-charts/prime/suse-observability",
        "suse-observability-agent",
    )
    assert (config.agent.namespace, config.agent.release) == (
        "suse-observability",
        "suse-observability-agent",
    )
    assert (config.neuvector.name, config.agent.name) == (NEUVECTOR, AGENT)
    assert config.api.service == "https:neuvector-svc-controller:10443"
    assert config.api.namespace == "cattle-neuvector-system"
    assert config.api.fail_on is FailOn.CRITICAL
    assert config.secret_name == "herd-addons"
    assert config.neuvector.wait and config.neuvector.timeout == "10m"


def test_configmap_strings_override_defaults_key_by_key() -> None:
    config = parse_config(
        {
            "neuvector.version": "2.8.7",
            "neuvector.repo": "http://127.0.0.1:8080",
            "neuvector.wait": "false",
            "neuvector.values": "controller:\n  replicas: 3\n",
            "neuvector.failOn": "HIGH",
            "observability.namespace": "obs",
            "observability.timeout": "15m",
            "observability.atomic": "true",
            "secretName": "sts-credentials",
        }
    )
    assert config.neuvector.version == "2.8.7"
    assert config.neuvector.repo == "http://127.0.0.1:8080"
    assert config.neuvector.chart_name == "core"  # untouched keys keep their default
    assert config.neuvector.wait is False
    assert config.neuvector.values.inline == {"controller": {"replicas": 3}}
    assert config.api.fail_on is FailOn.HIGH
    assert (config.agent.namespace, config.agent.timeout, config.agent.atomic) == (
        "obs",
        "15m",
        True,
    )
    assert config.secret_name == "sts-credentials"


def test_typed_values_are_accepted_too() -> None:
    config = parse_config({"neuvector.wait": False, "neuvector.values": {"k3s": {"enabled": 1}}})
    assert config.neuvector.wait is False
    assert config.neuvector.values.inline == {"k3s": {"enabled": 1}}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"neuvector.verison": "1"}, "ConfigMap ns/cm, key neuvector.verison: unknown key"),
        ({"neuvector.repo": "ftp://x"}, "ConfigMap ns/cm, key neuvector.repo: String should"),
        ({"observability.timeout": "ten"}, "key observability.timeout: String should match"),
        ({"neuvector.namespace": "Bad_NS"}, "key neuvector.namespace: String should match"),
        ({"neuvector.wait": "yes"}, "key neuvector.wait: must be true or false"),
        ({"neuvector.values": "a: [1"}, "key neuvector.values: is not valid YAML (line 1)"),
        ({"neuvector.values": "- 1\n- 2"}, "key neuvector.values: must be a YAML object"),
        ({"neuvector.version": ""}, "key neuvector.version: String should have at least 1"),
        ({"neuvector.apiService": "svc"}, "key neuvector.apiService: must be scheme:service:port"),
        ({"neuvector.failOn": "medium"}, "key neuvector.failOn: must be critical or high"),
        ({"secretName": " "}, "key secretName: must not be empty"),
    ],
)
def test_bad_configmap_names_the_key(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(AddonConfigError) as raised:
        parse_config(data, configmap="cm", namespace="ns")
    assert expected in str(raised.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(AddonConfigError) as raised:
        parse_config({"neuvector.wait": "maybe", "observability.repo": "nope", "x": "1"})
    fields = [p.field for p in raised.value.problems]
    assert fields == [
        "ConfigMap herd-system/herd-addons, key x",
        "ConfigMap herd-system/herd-addons, key neuvector.wait",
        "ConfigMap herd-system/herd-addons, key observability.repo",
    ]


def test_bad_values_never_echo_the_value() -> None:
    with pytest.raises(AddonConfigError) as raised:
        parse_config({"neuvector.values": "password: hunter2\n  bad: [indent"})
    assert "hunter2" not in str(raised.value)


def test_secret_parsing_and_credentials_never_show_values() -> None:
    credentials = parse_secret({**SECRET, "neuvector.password": " pw-1 ", "other": "x"})
    assert credentials.stackstate_api_key == "key-123"
    assert credentials.neuvector_username == "admin"
    assert credentials.neuvector_password == "pw-1"
    assert credentials.missing_for_agent == []
    assert credentials.can_read_scans
    text = repr(credentials) + str(credentials)
    assert "key-123" not in text and "pw-1" not in text and "sts.example.com" not in text
    assert "stackstate.apiKey" in text
    assert Credentials().missing_for_agent == ["stackstate.url", "stackstate.apiKey"]
    assert not Credentials().can_read_scans


def test_catalog_charts_follow_the_toggles() -> None:
    catalog = AddonCatalog.from_config({}, SECRET)
    assert catalog.charts(spec()) == []
    assert [c.name for c in catalog.charts(spec(security=True))] == [NEUVECTOR]
    assert [c.name for c in catalog.charts(spec(observability=True))] == [AGENT]
    both = catalog.charts(spec(security=True, observability=True))
    assert [c.name for c in both] == [NEUVECTOR, AGENT]


def test_agent_gets_the_cluster_name_url_and_key_per_cluster() -> None:
    catalog = AddonCatalog.from_config({}, SECRET)
    agent = catalog.charts(spec(observability=True))[0]
    assert catalog.cluster_values(cluster("c-m-1", "edge-1"), agent) == {
        "stackstate": {
            "cluster": {"name": "edge-1"},
            "url": "https://sts.example.com",
            "apiKey": "key-123",
        }
    }
    assert "key-123" not in agent.model_dump_json()  # never in the ChartSpec itself


def test_neuvector_gets_the_bootstrap_password_only_when_one_is_configured() -> None:
    neuvector = default_config().neuvector
    without = AddonCatalog.from_config({}, SECRET)
    assert without.cluster_values(cluster(), neuvector) == {}
    with_password = AddonCatalog.from_config({}, {"neuvector.password": "pw"})
    assert with_password.cluster_values(cluster(), neuvector) == {"bootstrapPassword": "pw"}


def test_user_charts_get_no_addon_values() -> None:
    catalog = AddonCatalog.from_config({}, {**SECRET, "neuvector.password": "pw"})
    assert catalog.cluster_values(cluster(), spec().charts[0]) == {}


def test_observability_without_credentials_is_a_spec_error_naming_the_secret() -> None:
    catalog = AddonCatalog.from_config({"secretName": "sts"}, {"stackstate.url": "https://x"})
    assert catalog.charts(spec(security=True))  # security alone needs no Secret
    with pytest.raises(SpecError) as raised:
        catalog.charts(spec(observability=True))
    assert str(raised.value) == (
        "spec.observability: the SUSE Observability agent needs stackstate.apiKey in the "
        "add-on Secret 'sts' (named by ConfigMap herd-system/herd-addons, key secretName)"
    )


def test_invalid_configuration_fails_only_stacks_that_use_addons() -> None:
    problem = AddonConfigError([])
    try:
        parse_config({"neuvector.wait": "maybe"})
    except AddonConfigError as error:
        problem = error
    catalog = AddonCatalog(None, problem=problem)
    assert catalog.charts(spec()) == []
    with pytest.raises(SpecError, match=r"spec.security: add-on configuration is invalid: .*wait"):
        catalog.charts(spec(security=True))


def test_unread_configuration_is_transient_for_stacks_that_use_addons() -> None:
    catalog = AddonCatalog(None)
    assert catalog.charts(spec()) == []
    with pytest.raises(TransientError, match="not read yet"):
        catalog.charts(spec(observability=True))


def test_the_plan_puts_addons_first_with_per_cluster_values() -> None:
    catalog = AddonCatalog.from_config({}, SECRET)
    stack = spec(security=True, observability=True)
    clusters = {"c-m-1": cluster("c-m-1", "edge-1"), "c-m-2": cluster("c-m-2", "edge-2")}
    plan = plan_stack(
        stack,
        addons=catalog.charts(stack),
        cluster_values=lambda cid, chart: catalog.cluster_values(clusters[cid], chart),
    )
    assert plan.waves == ((NEUVECTOR, AGENT), ("app",))
    for cluster_id, name in (("c-m-1", "edge-1"), ("c-m-2", "edge-2")):
        agent = next(r for r in plan.releases_for(cluster_id) if r.chart.name == AGENT)
        assert agent.values["stackstate"]["cluster"]["name"] == name
        assert agent.key.namespace == "suse-observability"


def test_the_sample_file_parses() -> None:
    catalog = AddonCatalog.from_file(SAMPLE)
    config = catalog.config
    assert config is not None
    assert config.neuvector.values.inline["controller"] == {"replicas": 3}
    assert config.secret_name == "herd-addons"
    assert catalog.credentials.missing_for_agent == []
    assert catalog.credentials.can_read_scans


def test_a_file_secret_with_base64_data_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "addons.yaml"
    path.write_text(
        "kind: ConfigMap\nmetadata: {name: a, namespace: b}\ndata: {}\n---\n"
        "kind: Secret\ndata:\n  stackstate.url: aHR0cHM6Ly94\n  stackstate.apiKey: aw==\n"
    )
    credentials = AddonCatalog.from_file(path).credentials
    assert (credentials.stackstate_url, credentials.stackstate_api_key) == ("https://x", "k")
    path.write_text("kind: ConfigMap\ndata: {}\n---\nkind: Secret\ndata: {stackstate.apiKey: '!'}")
    with pytest.raises(AddonConfigError, match=r"key stackstate.apiKey: is not base64"):
        AddonCatalog.from_file(path)
    path.write_text("kind: Secret\n")
    with pytest.raises(AddonConfigError, match="has no ConfigMap document"):
        AddonCatalog.from_file(path)
