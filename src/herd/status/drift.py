"""The drift parts of the Stack status: a row's `drift`, `driftedObjects` and the `Drifted`
condition. Pure.

`drift_row` turns a release's last check (`herd.plan.drift.ReleaseDrift`) into its row
field (None when there is nothing to say, so rows stay small). `with_drift` adds the
count and the condition from the pass's results; while no result carries a check yet (a
pass in progress, a Stack without checks) the previous status's are kept.

Callers: `herd.status.build.row` and `herd.status.pipeline.compose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from herd.api.status import Condition, DriftRow, StackStatus
from herd.plan.drift import ReleaseDrift
from herd.plan.results import ReleaseResult, State

DRIFTED = "Drifted"
ENTRIES = 5
MESSAGE_LIMIT = 200


def _when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def drift_row(drift: ReleaseDrift | None) -> DriftRow | None:
    if drift is None or not (drift.count or drift.corrected_at or drift.problems):
        return None
    return DriftRow(
        objects=drift.count,
        entries=drift.entries(ENTRIES),
        seen_at=_when(drift.seen),
        corrected_at=_when(drift.corrected_at),
        message="; ".join(drift.problems)[:MESSAGE_LIMIT],
    )


def drift_message(releases: Sequence[ReleaseResult]) -> tuple[int, str]:
    """Drifted objects over the releases, and a sentence naming the first."""
    drifted = [r for r in releases if r.drift is not None and r.drift.count]
    total = sum(r.drift.count for r in drifted if r.drift is not None)
    if not drifted:
        return 0, "No drift in the checked releases"
    first = drifted[0]
    entry = first.drift.entries(1)[0] if first.drift is not None else ""
    where = f"{first.key.cluster}/{first.key.namespace}/{first.key.name}"
    text = f"{total} objects drifted in {len(drifted)} releases; first: {where} {entry}"
    if first.drift is not None and first.drift.mode == "Warn":
        text += " (mode Warn: reported, not corrected)"
    return total, text[:MESSAGE_LIMIT]


def with_drift(
    status: StackStatus,
    releases: Sequence[ReleaseResult],
    now: datetime,
    previous: StackStatus | None,
    generation: int | None,
) -> StackStatus:
    """`status` with `driftedObjects` and the `Drifted` condition of `releases`."""
    live = [r for r in releases if r.state is not State.UNINSTALLED]
    old = next((c for c in previous.conditions if c.type == DRIFTED), None) if previous else None
    if not any(r.drift is not None for r in live):
        if old is None or previous is None:
            return status
        kept = [c for c in status.conditions if c.type != DRIFTED]
        return status.model_copy(
            update={"conditions": [*kept, old], "drifted_objects": previous.drifted_objects}
        )
    total, message = drift_message(live)
    value = "True" if total else "False"
    condition = Condition(
        type=DRIFTED,
        status=value,
        reason="DriftDetected" if total else "NoDrift",
        message=message,
        last_transition_time=(
            old.last_transition_time
            if old is not None and old.status == value and old.last_transition_time
            else now.strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
        observed_generation=generation,
    )
    kept = [c for c in status.conditions if c.type != DRIFTED]
    return status.model_copy(update={"conditions": [*kept, condition], "drifted_objects": total})
