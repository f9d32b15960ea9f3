"""A placement move, make-before-break: the leaving clusters the pick reports
(`herd.plan.placement`), when the move is complete (`herd.engine.moves.not_moved_yet`),
and the `PlacementChanged` Event (`herd.operator.events.log_placement`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

from herd.api.targets import Placement
from herd.cli.render import placement_document, placement_lines
from herd.engine.moves import not_moved_yet
from herd.engine.protocols import StackResult
from herd.operator.events import StackEvents, log_placement
from herd.plan.desired import StackPlan
from herd.plan.placement import GpuSupply, PlacementDecision, pick
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State

FREE = Placement.model_validate({"pickN": 1, "sortBy": "gpuFree"})


def test_a_move_leaves_the_old_pick_until_it_is_settled() -> None:
    found = {"a": GpuSupply(4, 0), "b": GpuSupply(2, 2), "c": GpuSupply(0, 0)}
    moved = pick(FREE, ["a", "b", "c"], found, previous=["a"])
    assert (moved.picked, moved.leaving, moved.moved) == (("b",), ("a",), True)
    # The next pass: b is the previous pick, a is still leaving (b not Deployed yet).
    again = pick(FREE, ["a", "b", "c"], found, previous=["b"], leaving=["a"])
    assert (again.picked, again.leaving, again.moved) == (("b",), ("a",), False)
    # A leaving cluster that is no longer a candidate (not ready, not granted) is not.
    assert pick(FREE, ["b", "c"], found, previous=["b"], leaving=["a"]).leaving == ()
    # No move, nothing leaving; a leaving cluster picked again is no longer leaving.
    assert pick(FREE, ["a", "b"], {"a": GpuSupply(4, 4)}, previous=["a"]).leaving == ()
    found = {"a": GpuSupply(4, 4), "b": GpuSupply(2, 0)}
    back = pick(FREE, ["a", "b"], found, previous=["b"], leaving=["a"])
    assert (back.picked, back.leaving) == (("a",), ("b",))


@dataclass
class FakePlan:
    names: dict[str, list[str]] = field(default_factory=dict)

    def releases_for(self, cluster: str) -> list[Any]:
        @dataclass
        class Desired:
            key: ReleaseKey

        return [Desired(ReleaseKey(cluster, "ns", n)) for n in self.names.get(cluster, [])]


def result(rows: list[tuple[str, str, State, str]]) -> StackResult:
    plan = cast(StackPlan, FakePlan({"b": ["web", "db"], "a": ["web", "db"]}))
    out = StackResult(plan, [], [])
    out.releases = [
        ReleaseResult(ReleaseKey(c, "ns", n), n, state, message=m) for c, n, state, m in rows
    ]
    return out


def test_moved_only_when_every_release_on_the_picked_clusters_is_deployed() -> None:
    decision = PlacementDecision(("b",), "pickN 1 by gpuFree: picked b", leaving=("a",))
    deployed = [("b", "web", State.DEPLOYED, ""), ("b", "db", State.DEPLOYED, "")]
    assert not_moved_yet(result(deployed), decision) == ""
    failed = [("b", "web", State.DEPLOYED, ""), ("b", "db", State.FAILED, "quota exceeded")]
    assert not_moved_yet(result(failed), decision) == "db on b is Failed: quota exceeded"
    assert not_moved_yet(result(deployed[:1]), decision) == ("db on b was not reached in this pass")
    # The leaving cluster's own rows do not count.
    on_a = [("a", "web", State.DEPLOYED, ""), ("a", "db", State.DEPLOYED, "")]
    assert not_moved_yet(result(on_a), decision) == "web on b was not reached in this pass"


class Posted:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def normal(self, reason: str, message: str) -> None:
        self.lines.append((reason, message))

    def warning(self, reason: str, message: str) -> None:
        self.lines.append((reason, message))


def test_placement_changed_event_once_per_move() -> None:
    posted = Posted()
    events = StackEvents(posted, window=60)
    logger = logging.getLogger("test")
    decision = PlacementDecision(("b",), "pickN 1 by gpuFree: picked b (2 free GPUs)")
    log_placement([], decision, logger, events)  # the first pick is no move
    log_placement(["b"], decision, logger, events)  # kept: no move
    log_placement(["a"], None, logger, events)  # no pickN
    assert posted.lines == []
    leaving = PlacementDecision(decision.picked, decision.reason, leaving=("a",))
    log_placement(["a"], leaving, logger, events)
    log_placement(["a"], leaving, logger, events)  # the same move again: de-duplicated
    assert posted.lines == [
        (
            "PlacementChanged",
            "targets.placement moves the Stack from a to b: pickN 1 by gpuFree: picked b "
            "(2 free GPUs); a keeps its releases until they are Deployed",
        )
    ]


def test_plan_lines_say_what_is_picked_and_what_is_not() -> None:
    decision = PlacementDecision(
        ("b",), "pickN 1 by gpuFree: picked b (2 free GPUs)", {"c": "0 free GPUs"}, True, ("a",)
    )
    assert placement_lines(decision) == [
        "placement: pickN 1 by gpuFree: picked b (2 free GPUs)",
        "placement: not picked c: 0 free GPUs",
        "placement: a keeps its releases until those on b are Deployed",
    ]
    assert placement_document(decision) == {
        "clusters": ["b"],
        "reason": "pickN 1 by gpuFree: picked b (2 free GPUs)",
        "notPicked": [{"cluster": "c", "reason": "0 free GPUs"}],
        "leaving": ["a"],
    }
    assert placement_lines(None) == []
    assert placement_document(None) is None
