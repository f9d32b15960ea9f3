"""`decide` with the clock, the Herd face and held failures: plain tables of inputs.

A pending-* release is stuck only when helm's last change is older than the chart's
timeout plus `stuck_after`; a manager label of the other face is a conflict unless
forced; a held config digest is not retried.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import StackSpec
from herd.names import LABEL_CONFIG, LABEL_MANAGER, LABEL_STACK
from herd.plan.decide import HELD_MESSAGE, Action, decide
from herd.plan.desired import plan_stack
from herd.plan.releases import SHARED_OWNER, ObservedRelease

OWNER = "default.rag"
NOW = 1_000_000.0
PLAN = plan_stack(
    StackSpec.model_validate(
        {
            "targets": {"clusterIds": ["c1"]},
            "charts": [{"name": "db", "repo": "https://r", "version": "1.0.0", "timeout": "2m"}],
        }
    )
)
DB = PLAN.releases_for("c1")[0]  # timeout 120 s


def found(
    status: str = "deployed",
    *,
    age: float | None = 0.0,
    manager: str | None = None,
    config: str = DB.config,
    owner: str = OWNER,
) -> ObservedRelease:
    labels = {"name": "db", "status": status, "version": "2", LABEL_CONFIG: config}
    labels[LABEL_STACK] = owner
    if manager is not None:
        labels[LABEL_MANAGER] = manager
    modified = None if age is None else NOW - age
    return ObservedRelease("default", "db", status, 2, labels, modified=modified)


@pytest.mark.parametrize(
    ("desired", "observed", "stuck_after", "action"),
    [
        # timeout 120 + stuck_after 60 = 180 s: younger is a live actor's, older is stuck
        (DB, found("pending-upgrade", age=10), 60, Action.WAIT),
        (DB, found("pending-upgrade", age=180), 60, Action.WAIT),
        (DB, found("pending-upgrade", age=181), 60, Action.RECOVER),
        (DB, found("pending-install", age=179), 60, Action.WAIT),
        (DB, found("pending-install", age=3600), 60, Action.RECOVER),
        (DB, found("pending-rollback", age=100), 0, Action.WAIT),
        (DB, found("pending-rollback", age=121), 0, Action.RECOVER),
        (DB, found("uninstalling", age=5), 60, Action.WAIT),
        # a leftover (no chart) ages against helm's default 5m timeout
        (None, found("pending-upgrade", age=359), 60, Action.WAIT),
        (None, found("pending-upgrade", age=361), 60, Action.RECOVER),
        # helm said nothing about time: recovered (the Secret's creation time is the fallback)
        (DB, found("pending-upgrade", age=None), 60, Action.RECOVER),
        # settled states are unaffected by age
        (DB, found("deployed", age=1), 60, Action.NOTHING),
        (DB, found("failed", age=1), 60, Action.UPGRADE),
    ],
)
def test_pending_is_stuck_only_when_old(
    desired: Any, observed: ObservedRelease, stuck_after: float, action: Action
) -> None:
    assert decide(desired, observed, OWNER, now=NOW, stuck_after=stuck_after).action is action


def test_wait_reason_gives_the_age() -> None:
    decision = decide(DB, found("pending-upgrade", age=42), OWNER, now=NOW)
    assert decision.reason == "operation in progress elsewhere, 42 s old (pending-upgrade)"


def test_without_a_clock_pending_reads_as_stuck() -> None:
    """`herd plan` without a clock shows what a dead actor's release would get."""
    assert decide(DB, found("pending-upgrade", age=1), OWNER).action is Action.RECOVER


@pytest.mark.parametrize(
    ("label", "manager", "force", "action"),
    [
        (None, "operator", False, Action.NOTHING),  # older Herd: the caller's
        (None, "cli", False, Action.NOTHING),
        ("operator", "operator", False, Action.NOTHING),
        ("cli", "cli", False, Action.NOTHING),
        ("operator", "cli", False, Action.CONFLICT),
        ("cli", "operator", False, Action.CONFLICT),
        # forced: upgraded, so the release carries the new face's label from now on
        ("operator", "cli", True, Action.UPGRADE),
        ("cli", "operator", True, Action.UPGRADE),
        ("cli", "cli", True, Action.NOTHING),
    ],
)
def test_manager_conflicts_unless_forced(
    label: str | None, manager: str, force: bool, action: Action
) -> None:
    observed = found(manager=label)
    assert decide(DB, observed, OWNER, manager=manager, force=force, now=NOW).action is action


def test_manager_conflict_messages() -> None:
    cli = decide(DB, found(manager="operator"), OWNER, manager="cli", now=NOW)
    assert cli.reason.endswith("managed by the Herd operator; use --force to take it over")
    operator = decide(DB, found(manager="cli"), OWNER, manager="operator", now=NOW)
    assert "managed by herd apply (CLI)" in operator.reason


@pytest.mark.parametrize(
    ("label", "manager", "force", "action"),
    [
        ("cli", "operator", False, Action.CONFLICT),  # the operator never removes the CLI's
        ("cli", "operator", True, Action.UNINSTALL),
        ("operator", "operator", False, Action.UNINSTALL),
    ],
)
def test_leftover_of_the_other_face(label: str, manager: str, force: bool, action: Action) -> None:
    observed = found(manager=label)
    assert decide(None, observed, OWNER, manager=manager, force=force, now=NOW).action is action


def test_shared_addons_ignore_the_face() -> None:
    addon = plan_stack(PLAN.spec, addons=[PLAN.charts[0].model_copy(update={"name": "nv"})])
    nv = addon.releases_for("c1")[0]
    observed = ObservedRelease(
        "default",
        nv.key.name,
        "deployed",
        1,
        {LABEL_STACK: SHARED_OWNER, LABEL_MANAGER: "cli", LABEL_CONFIG: nv.config},
    )
    assert decide(nv, observed, OWNER, manager="operator", now=NOW).action is Action.NOTHING


@pytest.mark.parametrize(
    ("observed", "held", "action"),
    [
        (None, DB.config, Action.HELD),
        (None, "other-digest", Action.INSTALL),
        (found("failed"), DB.config, Action.HELD),
        (found("deployed", config="old"), DB.config, Action.HELD),
        (found("deployed", config="old"), "old", Action.UPGRADE),
        (found("deployed"), DB.config, Action.NOTHING),  # deployed after all: nothing held
        (found("pending-upgrade", age=5), DB.config, Action.WAIT),
    ],
)
def test_held_config_is_not_retried(
    observed: ObservedRelease | None, held: str, action: Action
) -> None:
    decision = decide(DB, observed, OWNER, now=NOW, held=held)
    assert decision.action is action
    if action is Action.HELD:
        assert decision.reason == HELD_MESSAGE
