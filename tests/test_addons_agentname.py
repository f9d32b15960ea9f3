"""`stackstate.cluster.name`: what the agent chart's JSON schema accepts, for any cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd.addons.agentname import agent_cluster_name
from herd.addons.catalog import AddonCatalog
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.status.facts import AGENT

# The pattern as the real agent chart's values.schema.json spells it (not Herd's constant).
SCHEMA = re.compile(r"^[a-z0-9]([a-z0-9\-\.]*[a-z0-9])$")
# Kubernetes object names (DNS-1123 subdomains), which every Rancher cluster name is.
LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
RANCHER_NAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(lambda n: len(n) <= 253)


@given(RANCHER_NAME)
def test_every_rancher_name_of_two_or_more_characters_is_sent_unchanged(name: str) -> None:
    sent = agent_cluster_name(name)

    assert SCHEMA.match(sent)
    if len(name) >= 2:
        assert sent == name


@given(st.text())
def test_any_name_becomes_one_the_schema_accepts(name: str) -> None:
    assert SCHEMA.match(agent_cluster_name(name))


@given(st.text(), st.text())
def test_different_names_never_share_an_agent_identity(one: str, two: str) -> None:
    if one != two:
        assert agent_cluster_name(one) != agent_cluster_name(two)


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("a", "a-"),
        ("7", "7-"),
        ("GPU_East", "gpu-east-"),
        ("-edge-", "edge-"),
        ("prod cluster (eu)", "prod-cluster-eu-"),
        ("", "cluster-"),
        ("…", "cluster-"),
    ],
)
def test_invalid_names_keep_a_readable_stem(name: str, stem: str) -> None:
    sent = agent_cluster_name(name)

    assert sent.startswith(stem)
    assert SCHEMA.match(sent)
    assert agent_cluster_name(name) == sent  # stable across passes: no upgrade churn


def test_the_catalog_sends_the_valid_name() -> None:
    catalog = AddonCatalog.from_config({}, {"stackstate.url": "u", "stackstate.apiKey": "k"})
    assert catalog.config is not None
    agent = catalog.config.agent
    assert agent.name == AGENT

    def cluster(name: str) -> Cluster:
        ref = KubeconfigRef.file(Path("/dev/null"))
        return Cluster(id="c-m-1", name=name, labels={}, ready=True, source="file", kubeconfig=ref)

    ok = catalog.cluster_values(cluster("gpu-east"), agent)
    odd = catalog.cluster_values(cluster("G"), agent)

    assert ok["stackstate"]["cluster"]["name"] == "gpu-east"
    assert SCHEMA.match(odd["stackstate"]["cluster"]["name"])
