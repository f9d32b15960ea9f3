"""Fuzzed Stack bodies: parsing and `herd validate` never fail with anything but SpecError.

Bodies come from the CRD's own openAPIV3Schema (`e2e.testbed.stack_fuzz`), mixed with
targeted nasty strings (`--help`, `--repo=...`, unicode, long names). Whatever the body,
the pure checks a Stack goes through before any helm call (`parse_stack`, the chart
graph, `plan_stack`, release placement, each timeout) either accept it or raise
`SpecError` whose every problem names a field. Deterministic (derandomized), 150
examples per property (450 bodies), well under 30 s.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e.testbed import stack_fuzz
from herd.api import duration_seconds, parse_spec, parse_stack
from herd.cli.documents import check_document
from herd.errors import SpecError
from herd.plan.desired import plan_stack

SPECS = stack_fuzz.spec_strategy()
BODIES = st.builds(lambda spec: stack_fuzz.stack_body("fuzz", "default", spec), SPECS)
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIELD_ROOTS = ("spec", "metadata", "apiVersion", "kind", "(document)")


def _assert_fields_named(error: SpecError) -> None:
    assert error.problems, "a SpecError lists at least one problem"
    for problem in error.problems:
        assert problem.field.startswith(FIELD_ROOTS), problem
        assert problem.message, problem


def _judge(body: dict[str, Any]) -> None:
    """Every pure step before helm: accepted, or SpecError naming fields."""
    try:
        stack = parse_stack(body)
        plan = plan_stack(stack.spec)
        for release in plan.releases_for("c-m-fuzz"):
            assert release.key.name and release.key.namespace
            assert duration_seconds(release.chart.timeout) >= 0
    except SpecError as error:
        _assert_fields_named(error)


@FUZZ
@given(BODIES)
def test_parse_and_plan_raise_only_spec_errors(body: dict[str, Any]) -> None:
    _judge(body)


@FUZZ
@given(SPECS)
def test_parse_spec_agrees_with_parse_stack(spec: dict[str, Any]) -> None:
    outcomes = []
    for parse in (
        lambda: parse_spec(spec),
        lambda: parse_stack(stack_fuzz.stack_body("f", "d", spec)).spec,
    ):
        try:
            outcomes.append(parse())
        except SpecError as error:
            _assert_fields_named(error)
            outcomes.append(sorted(p.message for p in error.problems))
    assert outcomes[0] == outcomes[1]


@FUZZ
@given(BODIES)
def test_validate_reports_problems_instead_of_raising(body: dict[str, Any]) -> None:
    document = check_document("fuzz.yaml", body)
    assert document.stack is not None or document.problems
    for problem in document.problems:
        assert problem.field.startswith(FIELD_ROOTS), problem


@pytest.mark.parametrize("spec", stack_fuzz.targeted_specs("http://127.0.0.1:1"))
def test_targeted_bodies(spec: dict[str, Any]) -> None:
    _judge(stack_fuzz.stack_body("fuzz", "default", spec))
    document = check_document("fuzz.yaml", stack_fuzz.stack_body("fuzz", "default", spec))
    for problem in document.problems:
        assert problem.field.startswith(FIELD_ROOTS), problem


@pytest.mark.parametrize("chart", ["--help", "--repo=http://127.0.0.1:1", "-x"])
def test_flag_like_chart_names_are_spec_errors(chart: str) -> None:
    """Issue 11 point 10: a chart that would reach helm as a flag is refused up front."""
    body = stack_fuzz.stack_body(
        "fuzz",
        "default",
        {
            "targets": {"clusterIds": ["c-m-1"]},
            "charts": [{"name": "a", "chart": chart, "repo": "https://r.example", "version": "1"}],
        },
    )
    with pytest.raises(SpecError) as raised:
        parse_stack(body)
    assert any(p.field == "spec.charts[0].chart" for p in raised.value.problems)
