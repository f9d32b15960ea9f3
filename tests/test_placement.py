"""`targets.placement`: the API's checks, the pure pick (`herd.plan.placement`) and what
the status says and remembers (`herd.status.placement`). Tables of inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herd.api import parse_spec
from herd.api.status import DeploymentRow, PlacementStatus, StackStatus
from herd.api.targets import Placement
from herd.errors import SpecError
from herd.plan.placement import GpuSupply, Placed, pick
from herd.status.placement import remembered, with_placement

NOW = datetime(2026, 1, 1, tzinfo=UTC)
FREE = Placement.model_validate({"pickN": 1, "sortBy": "gpuFree"})


def supply(**free: int | None) -> dict[str, GpuSupply]:
    return {
        c: GpuSupply(allocatable=4, free=f) if f is not None else GpuSupply(problem="403")
        for c, f in free.items()
    }


@pytest.mark.parametrize(
    ("free", "previous", "need", "picked", "moved"),
    [
        ({"a": 4, "b": 0, "c": 0}, [], 1, ("a",), False),  # the most free GPUs
        ({"a": 2, "b": 2, "c": 1}, [], 1, ("a",), False),  # ties: the cluster id
        ({"a": 1, "b": 4}, ["a"], 1, ("a",), False),  # sticky while it still fits
        ({"a": 0, "b": 2}, ["a"], 1, ("b",), True),  # no longer fits, another does: moves
        ({"a": 0, "b": 0}, ["a"], 1, ("a",), False),  # nothing else fits: stays
        ({"a": None, "b": 4}, ["a"], 1, ("a",), False),  # unreadable: a read never moves it
        ({"a": None, "b": 4}, [], 1, ("b",), False),  # unknown is never picked anew
        ({"a": 1, "b": 2}, ["a"], 2, ("b",), True),  # the Stack needs 2 on one cluster
        ({"a": 0, "b": 0}, [], 1, (), False),  # nothing fits: nothing picked
        ({"a": 4}, ["gone"], 1, ("a",), False),  # a previous pick no longer a candidate
    ],
)
def test_pick(
    free: dict[str, int | None],
    previous: list[str],
    need: int,
    picked: tuple[str, ...],
    moved: bool,
) -> None:
    decision = pick(FREE, sorted(free), supply(**free), previous, need)
    assert (decision.picked, decision.moved) == (picked, moved)
    assert set(decision.not_picked) == set(free) - set(picked)


def test_pick_n_2_by_allocatable_and_the_reasons() -> None:
    placement = Placement.model_validate({"pickN": 2, "sortBy": "gpuAllocatable"})
    found = {
        "a": GpuSupply(allocatable=8, free=0),
        "b": GpuSupply(allocatable=2, free=2),
        "c": GpuSupply(allocatable=4, free=1),
    }
    decision = pick(placement, ["a", "b", "c"], found)
    assert decision.picked == ("a", "c")
    assert decision.reason == (
        "pickN 2 by gpuAllocatable: picked a (8 allocatable GPUs), c (4 allocatable GPUs)"
    )
    assert decision.not_picked == {
        "b": "2 allocatable GPUs; pickN 2 is taken by clusters with more"
    }
    kept = pick(placement, ["a", "b", "c"], found, previous=["c", "a"])
    assert kept.picked == ("c", "a")
    assert kept.reason == (
        "pickN 2 by gpuAllocatable: kept c (4 allocatable GPUs), a (8 allocatable GPUs): still fits"
    )
    stuck = pick(FREE, ["a", "b"], supply(a=0, b=0), previous=["a"])
    assert stuck.reason == "pickN 1 by gpuFree: kept a (0 free GPUs): no other cluster has 1 free"


def test_nothing_fits_says_so() -> None:
    decision = pick(FREE, ["a", "b"], supply(a=0, b=None))
    assert decision.reason == "no targeted cluster has 1 free GPU"
    assert decision.not_picked == {
        "a": "0 free GPUs, fewer than the 1 needed",
        "b": "GPUs unknown: 403",
    }
    assert pick(FREE, [], {}).reason == "no targeted cluster is ready and granted"


def stack(placement: object) -> dict[str, object]:
    return {
        "targets": {"clusterIds": ["a"], "placement": placement},
        "charts": [{"name": "x", "repo": "https://e.x", "version": "1", "namespace": "n"}],
    }


@pytest.mark.parametrize(
    ("placement", "problem"),
    [
        ({}, "spec.targets.placement: placement needs pickN or requireFit: true"),
        ({"pickN": 0}, "spec.targets.placement.pickN: Input should be greater than or equal to 1"),
        ({"pickN": 1, "sortBy": "gpus"}, "spec.targets.placement.sortBy: Input should be"),
        ({"requireFit": "maybe"}, "spec.targets.placement.requireFit: Input should be a valid"),
        ({"pickn": 1}, "spec.targets.placement.pickn: unknown field"),
    ],
)
def test_placement_errors_name_the_field(placement: object, problem: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(stack(placement))
    assert problem in str(raised.value)


def test_placement_defaults() -> None:
    spec = parse_spec(stack({"requireFit": True}))
    assert spec.targets.placement == Placement(require_fit=True)
    assert spec.targets.placement.sort_by == "gpuFree"
    assert spec.targets.placement.pick_n is None


def test_status_section_and_memory() -> None:
    decision = pick(FREE, ["a", "b"], supply(a=3, b=0))
    status = with_placement(StackStatus(), decision, None, NOW)
    assert status.placement is not None
    assert status.placement.clusters == ["a"]
    assert status.placement.reason == "pickN 1 by gpuFree: picked a (3 free GPUs)"
    assert [(s.cluster_id, s.reason) for s in status.placement.not_picked] == [
        ("b", "0 free GPUs, fewer than the 1 needed")
    ]
    assert status.placement.last_change_time == NOW.isoformat()
    later = with_placement(StackStatus(), decision, status, datetime(2027, 1, 1, tzinfo=UTC))
    assert later.placement is not None
    assert later.placement.last_change_time == NOW.isoformat()  # same pick: unchanged
    assert with_placement(StackStatus(), None, status, NOW).placement == status.placement
    assert with_placement(StackStatus(), None, status, NOW, wanted=False).placement is None
    rows = [
        DeploymentRow(
            cluster_id="a", chart_name="x", release_name="x", status="Deployed", gpu_requests=1
        ),
        DeploymentRow(
            cluster_id="a", chart_name="y", release_name="y", status="Deployed", gpu_requests=2
        ),
        DeploymentRow(
            cluster_id="b", chart_name="x", release_name="x", status="Deployed", gpu_requests=2
        ),
    ]
    previous = StackStatus(deployments=rows, placement=PlacementStatus(clusters=["a"]))
    assert remembered(previous) == Placed(("a",), 3)
    assert remembered(None) == Placed()
