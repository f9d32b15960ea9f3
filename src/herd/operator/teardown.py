"""Deleting a Stack: uninstall where its releases are, or say what the deletion waits for.

Called by `herd.operator.stack.ManagedStack.delete` (kopf's delete handler, which holds
the finalizer until the deletion is done), once the Stack's keeper has stopped, so no pass
installs anything after this deletion looked. Steps:

1. `spec.deletionPolicy: Orphan` keeps every release: nothing is contacted.
2. Otherwise the releases are uninstalled on the clusters the status records as holding
   them (`status.releaseClusters`) plus the current targets; every cluster when that
   record is missing or was cut at its bound. Only the releases the Stack's ownership
   record holds (`herd.plan.ownership`), and as the Stack's identity: its grants are read now
   (`Runtime.grants`), and a cluster they no longer cover is not contacted: it is
   orphaned, with a warning Event naming it.
3. `herd.plan.deletion.decide` says whether deletion is done (then the ownership record goes
   too). If not, `delete` returns a `Waiting`: the status (phase Deleting and a `Deleting`
   condition naming the clusters or releases it waits for, `herd.status.pipeline`) and the
   delay of the next attempt, an exponential backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herd.api import StackStatus
from herd.api.v1 import DeletionPolicy
from herd.engine.protocols import StackResult
from herd.operator.events import Events, Logger, log_release
from herd.operator.index import StackKey
from herd.operator.keeper import previous_targets
from herd.operator.runtime import Runtime
from herd.plan import deletion
from herd.plan.results import State, now
from herd.plan.retry import jitter, next_delay
from herd.status.pipeline import Kind, StatusInputs, compose


@dataclass(frozen=True)
class Waiting:
    """A deletion not done: the status to show, and when to try again."""

    status: StackStatus
    message: str
    delay: float


async def delete(
    runtime: Runtime,
    body: Any,
    previous: StackStatus | None,
    *,
    attempt: int,
    logger: Logger,
    events: Events | None,
) -> Waiting | None:
    """Uninstall the Stack's releases (see the module); None once it may go."""
    meta = body["metadata"]
    key: StackKey = (meta["namespace"], meta["name"])
    policy = (body.get("spec") or {}).get("deletionPolicy") or DeletionPolicy.DELETE
    if policy == DeletionPolicy.ORPHAN:
        logger.info("deletionPolicy Orphan: the Stack's releases stay where they are")
        return None
    recorded = previous_targets(previous)
    grants = await runtime.grants(key[0])  # TransientError: retried, never done as admin
    uid = meta.get("uid")
    result = await runtime.engine.delete(
        *key, lambda r: log_release(r, logger, None), only=recorded, grants=grants, uid=uid
    )
    unchecked, failed = _unchecked(result), _failed(result, logger)
    verdict = deletion.decide(
        holding=_holding(result, recorded, previous, unchecked, logger),
        inventory=await runtime.inventory_ids(),
        unchecked={c: why for c, why in unchecked.items() if c not in failed},
        failed=failed,
        orphan=deletion.orphaned_clusters(meta.get("annotations") or {}),
        denied=result.denied,
    )
    _report(key, verdict, logger, events)
    if not verdict.done:
        config = runtime.config
        delay = next_delay(
            attempt, rand=jitter(), base=config.retry_seconds, cap=config.backoff_max_seconds
        )
        message = f"{verdict.message()}; retrying in {delay:.0f}s"
        status = compose(
            StatusInputs(
                Kind.DELETING,
                meta.get("generation"),
                now(),
                previous,
                message=message,
                reason=verdict.reason,
            )
        )
        return Waiting(status, message, delay)
    await runtime.engine.forget(*key, uid=uid)  # TransientError: the deletion is retried
    return None


def _unchecked(result: StackResult) -> dict[str, str]:
    """Clusters whose releases could not be read (not those the grants left out): why."""
    unchecked = dict(result.unreachable)
    unchecked.update({s.cluster_id: s.reason for s in result.skipped})
    for cluster in result.denied:
        unchecked.pop(cluster, None)
    return unchecked


def _failed(result: StackResult, logger: Logger) -> dict[str, str]:
    """The first failed uninstall per cluster; releases labelled for the Stack but not its
    to remove are said (and kept)."""
    for r in result.releases:
        if r.state is State.SKIPPED and r.message:
            logger.warning("Release %s on cluster %s: %s", r.key.name, r.key.cluster, r.message)
    failed: dict[str, str] = {}
    for r in result.releases:
        if r.state in (State.FAILED, State.UNREACHABLE):
            failed.setdefault(
                r.key.cluster, f"{r.chart} ({r.key.namespace}/{r.key.name}): {r.message}"
            )
    return failed


def _holding(
    result: StackResult,
    recorded: set[str] | None,
    previous: StackStatus | None,
    unchecked: dict[str, str],
    logger: Logger,
) -> set[str]:
    """Clusters that hold the Stack's releases: the record, or without one what the
    status knew and what the pass found."""
    if recorded is not None:
        return set(recorded)
    holding = set(result.holding) & (set(previous.target_clusters) if previous else set()) | {
        r.key.cluster for r in result.releases
    }
    for cluster, reason in unchecked.items():
        if cluster not in holding:
            logger.warning("Cluster %s could not be checked for releases: %s", cluster, reason)
    return holding


def _report(
    key: StackKey, verdict: deletion.Verdict, logger: Logger, events: Events | None
) -> None:
    """Warn (log and Event) about every cluster whose releases the deletion leaves behind."""
    warnings = [
        (
            "ClusterNotGranted",
            f"Cluster {c} is not granted to namespace {key[0]} any more: the Stack's releases "
            "there are left in place (orphaned), not removed with Herd's own identity",
        )
        for c in verdict.not_granted
    ]
    warnings += [
        (
            "ClusterReleased",
            f"Cluster {c} is gone from the inventory; releases left there are no longer managed",
        )
        for c in verdict.released
    ]
    warnings += [
        ("ClusterOrphaned", f"Cluster {c} orphaned by annotation: its releases stay")
        for c in verdict.orphaned
    ]
    for reason, text in warnings:
        logger.warning("%s", text)
        if events is not None:
            events.warning(reason, text)
