"""The chart DAG: waves, and every way a dependsOn list can be wrong."""

from __future__ import annotations

import pytest

from herd.api import ChartSpec
from herd.errors import SpecError
from herd.plan.graph import ChartGraph, check


def c(name: str, *deps: str, **fields: str) -> ChartSpec:
    return ChartSpec.model_validate(
        {"name": name, "repo": "https://r", "version": "1", "dependsOn": list(deps), **fields}
    )


def test_waves_are_topological_generations_in_stack_order() -> None:
    graph = ChartGraph([c("llm", "gpu", "db"), c("x"), c("db", "gpu"), c("gpu")])
    assert graph.waves() == [["x", "gpu"], ["db"], ["llm"]]


def test_diamond() -> None:
    graph = ChartGraph([c("a"), c("b", "a"), c("c", "a"), c("d", "b", "c"), c("e")])
    assert graph.waves() == [["a", "e"], ["b", "c"], ["d"]]
    assert graph.dependents("a") == {"b", "c", "d"}
    assert graph.dependents("e") == set()
    assert graph.dependencies("d") == ["b", "c"]


@pytest.mark.parametrize(
    ("charts", "expected"),
    [
        ([c("a", "zz")], ["spec.charts[0].dependsOn[0]: unknown chart 'zz'"]),
        ([c("a", "a")], ["spec.charts[0].dependsOn[0]: chart 'a' depends on itself"]),
        (
            [c("a"), c("a")],
            [
                "spec.charts[1].name: duplicate chart name 'a' (also spec.charts[0])",
                "spec.charts[1].releaseName: release default/a is also deployed by spec.charts[0]",
            ],
        ),
        (
            [
                c("a", releaseName="same", namespace="ns"),
                c("b", releaseName="same", namespace="ns"),
            ],
            ["spec.charts[1].releaseName: release ns/same is also deployed by spec.charts[0]"],
        ),
        (
            [c("a", "b"), c("b", "c"), c("c", "a")],
            [
                "spec.charts[0].dependsOn: dependency cycle a -> b -> c -> a (each depends on the "
                "next)"
            ],
        ),
    ],
)
def test_problems(charts: list[ChartSpec], expected: list[str]) -> None:
    assert [str(p) for p in check(charts)] == expected


def test_same_release_name_in_two_namespaces_is_fine() -> None:
    assert check([c("a", releaseName="x", namespace="one"), c("b", releaseName="x")]) == []


def test_all_problems_together() -> None:
    with pytest.raises(SpecError) as caught:
        ChartGraph([c("a", "b"), c("b", "a"), c("d", "nope"), c("d")])
    fields = sorted(p.field for p in caught.value.problems)
    assert fields == [
        "spec.charts[0].dependsOn",
        "spec.charts[2].dependsOn[0]",
        "spec.charts[3].name",
        "spec.charts[3].releaseName",
    ]
