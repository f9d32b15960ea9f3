"""The egress deny list for tenant repository hosts (`herd.plan.egress`) and its guard."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from herd.api.charts import ChartSpec
from herd.helm.chart_cache import ChartCache
from herd.helm.egress_guard import RepoGuard
from herd.helm.environment import HelmEnvironment
from herd.helm.failures import FailureKind, HelmFailure
from herd.operator.config import OperatorConfig
from herd.plan.egress import (
    API_SERVER,
    CONFIGURED,
    METADATA,
    EgressPolicy,
    Endpoint,
    decide,
    endpoint,
    parse_hosts,
    parse_networks,
    refusal_message,
)

LOOPBACK = "a loopback address"
LINK_LOCAL = "a link-local address"
UNSPECIFIED = "the unspecified address"
DEFAULT = OperatorConfig.from_env({}).egress.with_api_servers([Endpoint("10.0.0.1", 6443)])


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("url", "addresses", "rules"),
    [
        ("https://charts.example.com", ["93.184.216.34"], ()),
        ("http://169.254.169.254/latest/meta-data", ["169.254.169.254"], (METADATA, LINK_LOCAL)),
        ("https://evil.example.com", ["169.254.169.254"], (METADATA, LINK_LOCAL)),
        ("oci://[fd00:ec2::254]/charts", ["fd00:ec2::254"], (METADATA,)),
        ("https://x.example.com", ["169.254.10.1"], (LINK_LOCAL,)),
        ("https://x.example.com", ["fe80::1"], (LINK_LOCAL,)),
        ("http://127.0.0.1:8080", ["127.0.0.1"], (LOOPBACK,)),
        ("http://localhost", ["127.0.0.1", "::1"], (LOOPBACK,)),
        ("http://0.0.0.0", ["0.0.0.0"], (UNSPECIFIED,)),
        ("http://[::]", ["::"], (UNSPECIFIED,)),
        ("https://10.0.0.1:6443", ["10.0.0.1"], (API_SERVER,)),
        ("https://10.0.0.1:8443", ["10.0.0.1"], ()),  # another port: not the API server
        ("https://svc.example.com", ["10.43.0.10"], (CONFIGURED,)),
        ("https://pod.example.com", ["10.42.1.7"], (CONFIGURED,)),
        # an IPv4-mapped IPv6 address is judged as its IPv4 one
        ("https://m.example.com", ["::ffff:169.254.169.254"], (METADATA, LINK_LOCAL)),
        # one bad address among good ones refuses the host (helm may pick any of them)
        ("https://mixed.example.com", ["93.184.216.34", "127.0.0.2"], (LOOPBACK,)),
    ],
)
def test_default_policy(url: str, addresses: list[str], rules: tuple[str, ...]) -> None:
    verdict = decide(DEFAULT, url, [ip(a) for a in addresses])
    assert verdict.rules == rules
    assert verdict.allowed is (not rules)


def test_allowed_cidrs_lift_fixed_and_configured_rules_but_not_metadata_or_api_server() -> None:
    policy = EgressPolicy(
        deny_networks=parse_networks("10.43.0.0/16", "x"),
        allow_networks=parse_networks("127.0.0.0/8,10.43.0.0/16,169.254.0.0/16", "x"),
        api_servers=frozenset({Endpoint("127.0.0.1", 6443)}),
    )
    assert decide(policy, "http://127.0.0.1:8879", [ip("127.0.0.1")]).allowed
    assert decide(policy, "http://mirror.svc", [ip("10.43.0.9")]).allowed
    assert decide(policy, "https://127.0.0.1:6443", [ip("127.0.0.1")]).rules == (API_SERVER,)
    assert decide(policy, "http://169.254.169.254", [ip("169.254.169.254")]).rules == (METADATA,)


@pytest.mark.parametrize(
    ("allowed", "url", "ok"),
    [
        ("127.0.0.1:8879", "http://127.0.0.1:8879/charts", True),
        ("127.0.0.1:8879", "http://127.0.0.1:8880/charts", False),
        ("mirror.internal", "oci://mirror.internal:5000/charts", True),
        ("MIRROR.internal.", "https://mirror.internal/charts", True),
        ("[::1]:5000", "oci://[::1]:5000/charts", True),
        ("mirror.internal:443", "https://mirror.internal", True),  # the default port
    ],
)
def test_allowed_hosts_pass_everything(allowed: str, url: str, ok: bool) -> None:
    policy = EgressPolicy(allow_hosts=parse_hosts(allowed))
    assert decide(policy, url, [ip("127.0.0.1")]).allowed is ok


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "http://evil.com\\@169.254.169.254/",
        "http://%31%32%37.0.0.1/",
        "http://exa mple.com/",
        "https://example.com:99999/",
        "https:///charts",
    ],
)
def test_urls_without_a_plain_host_are_refused(url: str) -> None:
    verdict = decide(DEFAULT, url, None)
    assert not verdict.allowed
    assert "plain host" in refusal_message("spec.charts[0].repo", verdict)


def test_endpoint_parsing() -> None:
    assert endpoint("oci://User:pw@Registry.Example.com:5000/x") == Endpoint(
        "registry.example.com", 5000
    )
    assert endpoint("https://[::1]/charts") == Endpoint("::1", 443)
    assert endpoint("http://2130706433/") == Endpoint("2130706433", 80)  # resolved later


def test_refusal_names_the_field_and_rule_and_nothing_about_the_listener() -> None:
    verdict = decide(DEFAULT, "http://127.0.0.1:9", [ip("127.0.0.1")])
    message = refusal_message("spec.charts[2].repo", verdict)
    assert message.startswith("spec.charts[2].repo: not allowed for a tenant Stack, nothing")
    assert "host '127.0.0.1' is a loopback address" in message
    assert len(message) <= 200
    for word in ("refused", "timeout", "404", "TLS", "unreachable"):
        assert word not in message


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(ValueError, match="HERD_EGRESS_DENY_CIDRS: 'nope'"):
        OperatorConfig.from_env({"HERD_EGRESS_DENY_CIDRS": "10.0.0.0/8,nope"})
    with pytest.raises(ValueError, match="HERD_ALLOW_EXEC_KUBECONFIGS"):
        OperatorConfig.from_env({"HERD_ALLOW_EXEC_KUBECONFIGS": "yes"})
    config = OperatorConfig.from_env(
        {"HERD_EGRESS_DENY_CIDRS": "", "HERD_EGRESS_ALLOW_HOSTS": "a:1, b"}
    )
    assert config.egress.deny_networks == ()
    assert config.egress.allow_hosts == {"a:1", "b"}


# -- the guard (resolution through the real resolver: literals and localhost only) -------


def chart(name: str, repo: str) -> ChartSpec:
    return ChartSpec.model_validate({"name": name, "repo": repo, "version": "1.0.0"})


async def test_guard_refuses_the_tenants_chart_with_the_field_and_passes_others() -> None:
    charts = [chart("ok", "https://93.184.216.34/charts"), chart("bad", "http://127.0.0.1:1")]
    guard = RepoGuard.for_charts(DEFAULT, charts)
    await guard(charts[0])
    with pytest.raises(HelmFailure) as raised:
        await guard(charts[1])
    assert raised.value.kind is FailureKind.EGRESS_DENIED
    assert not raised.value.transient
    assert raised.value.message.startswith("spec.charts[1].repo: not allowed for a tenant Stack")
    # an add-on chart (not in spec.charts) is the admins' and is not checked
    await guard(chart("herd-addon", "http://127.0.0.1:1"))


async def test_guard_resolves_names_off_the_loop() -> None:
    guard = RepoGuard.for_charts(DEFAULT, [chart("a", "http://localhost:8879")])
    with pytest.raises(HelmFailure, match=LOOPBACK):
        await asyncio.wait_for(guard(chart("a", "http://localhost:8879")), 10)


async def test_guard_finds_the_api_server_by_name() -> None:
    policy = EgressPolicy(
        allow_networks=parse_networks("127.0.0.0/8,::1/128", "x"),
        api_servers=frozenset({Endpoint("localhost", 6443)}),
    )
    guard = RepoGuard.for_charts(policy, [chart("a", "https://127.0.0.1:6443")])
    with pytest.raises(HelmFailure, match="API server"):
        await guard(chart("a", "https://127.0.0.1:6443"))


async def test_the_chart_cache_asks_the_guard_before_any_pull() -> None:
    env = HelmEnvironment()
    refused = chart("bad", "http://127.0.0.1:1")
    cache = ChartCache(env, guard=RepoGuard.for_charts(DEFAULT, [refused]))
    try:
        with pytest.raises(HelmFailure) as raised:
            await cache.get(refused)
        assert raised.value.kind is FailureKind.EGRESS_DENIED
        assert cache._pulls == {}  # no helm pull was even started
    finally:
        cache.close()
        env.close()
