"""One object per Stack (`herd.operator.stack`): wake annotations act once per value, a pause
resumes every Stack, an Orphan deletion forgets the Stack and contacts nothing. The loop
itself runs against real control planes in e2e/test_operator.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from herd.api import Targets
from herd.names import APPROVE_ANNOTATION
from herd.operator import metrics
from herd.operator.handlers import _new_value, annotated
from herd.operator.index import TargetIndex
from herd.operator.stack import Stacks, where
from herd.rollout.gates import Gates

KEY = ("team", "app")


class FakeRuntime:
    def __init__(self) -> None:
        self.gates = Gates(helm=1, clusters=1)
        self.index = TargetIndex()
        self.fleet = metrics.Fleet()
        self.engine = None  # an Orphan deletion must not reach it


def stacks() -> Stacks:
    return Stacks(FakeRuntime())  # type: ignore[arg-type]


def woken(made: Stacks, key: tuple[str, str] = KEY) -> bool:
    return made._stack(key)._wake.is_set()


def test_a_wake_annotation_acts_once_per_value() -> None:
    made = stacks()
    assert made.annotation_new(KEY, APPROVE_ANNOTATION, "canary")
    assert not made.annotation_new(KEY, APPROVE_ANNOTATION, None)
    made.annotation_seen(KEY, APPROVE_ANNOTATION, "canary")
    assert woken(made)
    made._stack(KEY)._wake.clear()
    assert not made.annotation_new(KEY, APPROVE_ANNOTATION, "canary")
    made.annotation_seen(KEY, APPROVE_ANNOTATION, "canary")
    assert not woken(made), "the same value again does nothing"
    made._stack(KEY)._approval_used()  # the keeper removed the approval it recorded
    assert made.annotation_new(KEY, APPROVE_ANNOTATION, "canary"), "set again: a new approval"


def test_approving_the_same_stage_again_wakes_the_keeper_at_once() -> None:
    """The keeper uses an approval and removes it; a watch event from before the removal
    (a status write) still carries it and is taken for a new value. The removal's event
    must forget it, or approving the same stage again waits for the next resync."""
    made = stacks()
    memo = {"stacks": made}
    wake = _new_value(APPROVE_ANNOTATION)

    def event(value: str | None) -> None:
        annotations = {APPROVE_ANNOTATION: value} if value else {}
        body = {"metadata": {"namespace": KEY[0], "name": KEY[1], "annotations": annotations}}
        if wake(body=body, memo=memo):
            asyncio.run(annotated(body=body, memo=memo, param=APPROVE_ANNOTATION))

    event("canary")  # approved
    made._stack(KEY)._approval_used()  # the pass used it
    event("canary")  # a status write's event, from before the removal
    event(None)  # the removal
    made._stack(KEY)._wake.clear()
    event("canary")  # `herd approve ... canary` again
    assert woken(made), "approving the same stage again did not wake the keeper"


def test_resuming_wakes_every_stack() -> None:
    made = stacks()
    other = ("team", "db")
    made.signal(KEY)
    made.signal(other)
    for key in (KEY, other):
        made._stack(key)._wake.clear()
    made.pause(True)
    assert not woken(made) and made.runtime.gates.draining
    made.pause(False)
    assert woken(made) and woken(made, other) and not made.runtime.gates.draining
    assert sorted(made.kept()) == sorted([KEY, other])


def test_an_orphan_deletion_forgets_the_stack() -> None:
    made = stacks()
    made.signal(KEY)
    made.runtime.index.set(KEY, _targets())
    body: dict[str, Any] = {
        "metadata": {"namespace": KEY[0], "name": KEY[1], "uid": "u"},
        "spec": {"deletionPolicy": "Orphan"},
    }
    asyncio.run(made.delete(body, logging.getLogger("test")))
    assert made.kept() == []
    assert made.runtime.index.get(KEY) is None


def _targets() -> Targets:
    return Targets.model_validate({"clusterIds": ["c1"]})


def test_where_names_the_innermost_coroutine_a_pass_waits_in() -> None:
    """A stop that waits on a pass logs where it waits (`finish_pass`): the innermost
    coroutine of its await chain, and what that awaits."""

    async def stuck_in_a_check(gate: asyncio.Event) -> None:
        await gate.wait()

    async def a_pass(gate: asyncio.Event) -> None:
        await stuck_in_a_check(gate)

    async def scenario() -> str:
        gate = asyncio.Event()
        task = asyncio.create_task(a_pass(gate))
        await asyncio.sleep(0)
        found = where(task)
        gate.set()
        await task
        return found

    found = asyncio.run(scenario())
    assert "locks.py" in found and " wait, " in found, found  # Event.wait, under both
    assert "awaiting a Future" in found, found
