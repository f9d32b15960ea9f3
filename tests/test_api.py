"""The Stack model: what it accepts, what it rejects, and how it names the field."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import Toggle, duration_seconds, parse_spec, parse_stack
from herd.api.v1 import DeletionPolicy
from herd.errors import SpecError
from tests.conftest import chart, stack_body


def problems(body: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_stack(body)
    return [str(p) for p in caught.value.problems]


def test_defaults_follow_name() -> None:
    stack = parse_stack(stack_body(chart("qdrant")))
    c = stack.spec.charts[0]
    assert (c.chart_name, c.release, c.namespace, c.timeout, c.wait, c.atomic) == (
        "qdrant",
        "qdrant",
        "default",
        "5m",
        False,
        False,
    )
    assert stack.spec.security is Toggle.DISABLED


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("enabled", Toggle.ENABLED),
        ("disabled", Toggle.DISABLED),
        (True, Toggle.ENABLED),
        (False, Toggle.DISABLED),
    ],
)
def test_toggles_accept_words_and_yaml_booleans(given: object, expected: Toggle) -> None:
    spec = parse_stack(stack_body(security=given, observability=given)).spec
    assert (spec.security, spec.observability) == (expected, expected)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"repo": "ftp://x"}, "spec.charts[0].repo: must be an https://, http:// or oci:// URL"),
        ({"timeout": "5 minutes"}, "spec.charts[0].timeout: must be a Go duration"),
        ({"name": "Bad_Name"}, "spec.charts[0].name: must be a DNS-1123 label"),
        ({"releaseName": "x" * 54}, "spec.charts[0].releaseName: String should have at most"),
        ({"surprise": 1}, "spec.charts[0].surprise: unknown field"),
        (
            {"values": {"from": [{"kind": "Pod", "name": "x"}]}},
            "spec.charts[0].values.from[0].kind",
        ),
        (
            {"values": {"from": [{"kind": "Secret", "name": "/tmp"}]}},
            "spec.charts[0].values.from[0].name",
        ),
        (
            {"values": {"from": [{"kind": "Secret", "name": "s", "key": "a/b"}]}},
            "spec.charts[0].values.from[0].key",
        ),
    ],
)
def test_bad_chart_fields_are_named(override: dict[str, Any], expected: str) -> None:
    found = problems(stack_body({**chart("a"), **override}))
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"charts": []}, "spec.charts: List should have at least 1 item"),
        ({"targets": {}}, "spec.targets: targets needs clusterIds or a selector"),
        ({"targets": {"selector": {}}}, "spec.targets.selector: selector needs matchLabels"),
        (
            {"targets": {"selector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}},
            "spec.targets.selector.matchExpressions[0]: operator In needs at least one value",
        ),
        (
            {
                "targets": {
                    "selector": {
                        "matchExpressions": [{"key": "k", "operator": "Exists", "values": ["x"]}]
                    }
                }
            },
            "spec.targets.selector.matchExpressions[0]: operator Exists takes no values",
        ),
        ({"security": "on"}, "spec.security: Input should be 'enabled' or 'disabled'"),
    ],
)
def test_bad_spec_fields_are_named(spec: dict[str, Any], expected: str) -> None:
    found = problems(stack_body(**spec))
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(stack_body(chart("A", repo="ftp://x", timeout="soon"), targets={}))
    assert len(found) == 4, found


def test_wrong_api_version_is_named() -> None:
    body = stack_body()
    body["apiVersion"] = "herd.suse.com/v2"
    assert problems(body) == ["apiVersion: must be herd.suse.com/v1, got 'herd.suse.com/v2'"]


def test_parse_spec_locates_under_spec() -> None:
    with pytest.raises(SpecError, match=r"spec\.charts\[0\]\.version: is required"):
        parse_spec(
            {"targets": {"clusterIds": ["x"]}, "charts": [{"name": "a", "repo": "https://r"}]}
        )


def test_values_sections_parse() -> None:
    values = {
        "inline": {"a": {"b": 1}},
        "envs": {"prod": {"a": {"b": 2}}},
        "from": [{"kind": "Secret", "name": "creds"}],
    }
    parsed = parse_stack(stack_body(chart("a", values=values))).spec.charts[0].values
    assert parsed.inline == {"a": {"b": 1}}
    assert parsed.envs["prod"] == {"a": {"b": 2}}
    assert (parsed.from_[0].kind, parsed.from_[0].key, parsed.from_[0].optional) == (
        "Secret",
        "values.yaml",
        False,
    )


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("250ms", 0.25)],
)
def test_duration_seconds(duration: str, seconds: float) -> None:
    assert duration_seconds(duration) == pytest.approx(seconds)


def test_deletion_policy_is_one_enum() -> None:
    spec = {"targets": {"clusterIds": ["c1"]}, "charts": [chart("a")]}
    assert parse_spec(spec).deletion_policy is DeletionPolicy.DELETE
    orphan = parse_spec({**spec, "deletionPolicy": "Orphan"})
    assert orphan.deletion_policy is DeletionPolicy.ORPHAN
    with pytest.raises(SpecError, match="deletionPolicy"):
        parse_spec({**spec, "deletionPolicy": "Keep"})
