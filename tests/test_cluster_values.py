"""Per-cluster values and templated values: the template language, the override layers, the
merge order and per-cluster digests. Pure tables and properties (`herd.plan.templating`,
`herd.plan.values`, `herd.plan.desired`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd.api import parse_stack
from herd.errors import SpecError
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.decide import Action, decide
from herd.plan.desired import plan_stack
from herd.plan.templating import (
    OPEN,
    TemplateError,
    UnknownVariable,
    check_values,
    facts,
    render,
    render_values,
    variables,
)

EU = Cluster("c-m-eu1", "eu-one", {"region": "eu", "tier": "gold"}, True, "file", KubeconfigRef())
US = Cluster("c-m-us1", "us-one", {"region": "us"}, True, "file", KubeconfigRef())
BARE = Cluster("c-m-bare", "bare", {}, True, "file", KubeconfigRef())
KNOWN = facts(EU)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("{{ .Cluster.name }}", "eu-one"),
        ("{{.Cluster.id}}", "c-m-eu1"),
        ("app-{{ .Cluster.labels.region }}-{{ .Cluster.labels.tier }}", "app-eu-gold"),
        ("}} alone is text", "}} alone is text"),
    ],
)
def test_render(text: str, expected: str) -> None:
    assert render(text, KNOWN) == expected


def test_prefixed_label_keys_are_one_key() -> None:
    known = {"labels.topology.kubernetes.io/region": "eu-west"}
    assert render("{{ .Cluster.labels.topology.kubernetes.io/region }}", known) == "eu-west"


@pytest.mark.parametrize(
    "text",
    [
        "{{ .Cluster.name",
        "{{ .Cluster.nam }}",
        "{{ .Values.x }}",
        "{{ .Cluster.labels }}",
        "{{ .Cluster.name | upper }}",
        '{{ printf "%s" .Cluster.name }}',
        "{{ {{ .Cluster.id }}",
        "ok {{ .Cluster.id }} then {{",
    ],
)
def test_malformed_templates_are_errors(text: str) -> None:
    with pytest.raises(TemplateError):
        variables(text)


def test_unknown_variable_names_path_and_variable() -> None:
    with pytest.raises(UnknownVariable) as raised:
        render_values({"a": [{"b": "{{ .Cluster.labels.zone }}"}]}, KNOWN, "values.inline")
    assert raised.value == UnknownVariable("values.inline.a[0].b", ".Cluster.labels.zone")


def test_only_strings_are_rendered_and_keys_are_kept() -> None:
    tree = {"{{ .Cluster.name }}": 3, "on": True, "list": ["{{ .Cluster.id }}", 1.5, None]}
    assert render_values(tree, KNOWN, "") == {
        "{{ .Cluster.name }}": 3,
        "on": True,
        "list": ["c-m-eu1", 1.5, None],
    }


def test_check_values_locates_each_problem() -> None:
    tree = {"ok": "{{ .Cluster.id }}", "bad": {"deep": ["x", "{{ .Cluster.nope }}"]}}
    assert [where for where, _ in check_values(tree, "values.inline")] == [
        "values.inline.bad.deep[1]"
    ]


_text = st.text(alphabet=st.characters(blacklist_characters="{"), max_size=30)
_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)


@given(_values)
def test_untemplated_values_are_unchanged(values: Any) -> None:
    assert render_values(values, KNOWN, "") == values


_pieces = st.lists(
    _text
    | st.sampled_from(["{{ .Cluster.id }}", "{{.Cluster.name}}", "{{ .Cluster.labels.region }}"]),
    max_size=6,
)


@given(_pieces)
def test_no_template_survives_rendering(pieces: list[str]) -> None:
    text = "".join(pieces)
    rendered = render(text, KNOWN)
    assert OPEN not in rendered
    assert rendered == "".join(render(p, KNOWN) for p in pieces)


# -- the plan ------------------------------------------------------------------------------


def stack(*charts: dict[str, Any]) -> Any:
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": "s", "namespace": "default"},
            "spec": {
                "env": "prod",
                "targets": {"clusterIds": ["c-m-eu1", "c-m-us1", "c-m-bare"]},
                "charts": list(charts),
            },
        }
    )


def chart(values: dict[str, Any], name: str = "app") -> dict[str, Any]:
    return {"name": name, "repo": "https://r", "version": "1.0.0", "values": values}


LAYERED = {
    "inline": {"a": "inline", "b": "inline", "c": "inline", "d": "inline"},
    "envs": {"prod": {"b": "env", "c": "env", "d": "env"}},
    "clusters": [
        {"selector": {"matchLabels": {"region": "eu"}}, "inline": {"c": "eu", "d": "eu"}},
        {"clusterIds": ["eu-one"], "inline": {"d": "by-name"}},
    ],
    "from": [{"kind": "ConfigMap", "name": "v", "optional": True}],
}


def values_on(spec_values: dict[str, Any], cluster: Cluster, **from_: Any) -> dict[str, Any]:
    plan = plan_stack(
        stack(chart(spec_values)).spec,
        clusters=[EU, US, BARE],
        from_values={("ConfigMap", "v", "values.yaml"): from_} if from_ else None,
    )
    return plan.releases_for(cluster.id)[0].values


def test_merge_order_inline_envs_clusters_in_order_then_from() -> None:
    assert values_on(LAYERED, EU) == {"a": "inline", "b": "env", "c": "eu", "d": "by-name"}
    assert values_on(LAYERED, US) == {"a": "inline", "b": "env", "c": "env", "d": "env"}
    assert values_on(LAYERED, EU, d="from")["d"] == "from"


def test_from_values_are_not_templated() -> None:
    values = {**LAYERED, "templated": True}
    assert values_on(values, EU, x="{{ .Cluster.name }}")["x"] == "{{ .Cluster.name }}"


def test_templated_values_render_per_cluster_and_digest_per_cluster() -> None:
    values = {
        "templated": True,
        "inline": {"name": "{{ .Cluster.name }}", "region": "{{ .Cluster.labels.region }}"},
    }
    spec = stack(chart(values)).spec
    plan = plan_stack(spec, clusters=[EU, US])
    eu, us = plan.releases_for(EU.id)[0], plan.releases_for(US.id)[0]
    assert (eu.values, us.values) == (
        {"name": "eu-one", "region": "eu"},
        {"name": "us-one", "region": "us"},
    )
    moved = Cluster(US.id, US.name, {"region": "ap"}, True, "file", KubeconfigRef())
    again = plan_stack(spec, clusters=[EU, moved])
    assert again.releases_for(EU.id)[0].config == eu.config  # untouched cluster: no upgrade
    assert again.releases_for(US.id)[0].config != us.config


def test_untemplated_charts_keep_braces() -> None:
    assert values_on({"inline": {"x": "{{ .Cluster.name }}"}}, EU) == {"x": "{{ .Cluster.name }}"}


def test_unknown_variable_fails_only_that_clusters_release() -> None:
    values = {"templated": True, "inline": {"zone": {"r": "{{ .Cluster.labels.region }}"}}}
    plan = plan_stack(stack(chart(values)).spec, clusters=[EU, BARE])
    good, bad = plan.releases_for(EU.id)[0], plan.releases_for(BARE.id)[0]
    assert good.problem == ""
    assert bad.problem == (
        "chart app: values.inline.zone.r uses {{ .Cluster.labels.region }}, "
        "but cluster c-m-bare (bare) has no label 'region'"
    )
    decision = decide(bad, None, "default.s")
    assert decision.action is Action.INVALID and decision.reason == bad.problem
    assert decide(good, None, "default.s").action is Action.INSTALL


def test_malformed_templates_are_spec_errors_naming_the_value() -> None:
    values = {
        "templated": True,
        "inline": {"ok": "{{ .Cluster.id }}"},
        "envs": {"dev": {"x": "{{ .Cluster.name"}},
        "clusters": [{"clusterIds": ["c"], "inline": {"y": ["{{ .Nope }}"]}}],
    }
    with pytest.raises(SpecError) as raised:
        plan_stack(stack(chart({"inline": {}}), chart(values, "two")).spec)
    assert [p.field for p in raised.value.problems] == [
        "spec.charts[1].values.envs.dev.x",
        "spec.charts[1].values.clusters[0].inline.y[0]",
    ]


def test_malformed_templates_of_untemplated_charts_are_text() -> None:
    plan_stack(stack(chart({"inline": {"x": "{{ .Nope"}})).spec)


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"inline": {"a": 1}}, "spec.charts[1].values.clusters[0]"),
        ({"selector": {}, "inline": {}}, "spec.charts[1].values.clusters[0].selector"),
        ({"clusterIds": ["c"], "inlin": {}}, "spec.charts[1].values.clusters[0].inlin"),
    ],
)
def test_bad_clusters_entries_are_named(entry: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as raised:
        stack(chart({}), chart({"clusters": [entry]}, "two"))
    assert field in [p.field for p in raised.value.problems]
