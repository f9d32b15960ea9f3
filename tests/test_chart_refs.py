"""`chart` and `version` never reach helm as flags: refused by the model (and the CRD)."""

from __future__ import annotations

import re

import pytest

from herd.api import parse_spec
from herd.api.common import CHART_REF, CHART_VERSION
from herd.errors import SpecError


def spec(**chart: str) -> dict[str, object]:
    return {
        "targets": {"clusterIds": ["c1"]},
        "charts": [{"name": "a", "repo": "https://r", "version": "1.0.0", **chart}],
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chart", "--help"),
        ("chart", "--repo=http://127.0.0.1:1"),
        ("chart", "-x"),
        ("chart", "../etc"),
        ("chart", "a/../../b"),
        ("chart", "a b"),
        ("chart", "/abs"),
        ("version", "--devel"),
        ("version", "-1"),
        ("version", " 1.0"),
    ],
)
def test_flags_and_escapes_are_spec_errors(field: str, value: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec(**{field: value}))
    (problem,) = error.value.problems
    assert problem.field == f"spec.charts[0].{field}"
    assert repr(value) in problem.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chart", "app"),
        ("chart", "team/app"),
        ("chart", "gpu-operator"),
        ("chart", "a.b_c"),
        ("version", "0.59.0"),
        ("version", "1.2.3+build.1"),
        ("version", ">=1.0.0"),
        ("version", "v2"),
    ],
)
def test_names_paths_and_versions_pass(field: str, value: str) -> None:
    parse_spec(spec(**{field: value}))


def test_patterns_land_in_the_crd() -> None:
    from herd.api.crd import crd  # noqa: PLC0415

    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    chart = schema["properties"]["spec"]["properties"]["charts"]["items"]["properties"]
    assert chart["chart"]["pattern"] == CHART_REF
    assert chart["version"]["pattern"] == CHART_VERSION
    assert re.match(CHART_REF, "app") and not re.match(CHART_VERSION, "-x")
