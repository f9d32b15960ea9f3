"""Deleting a Stack: stop its keeper, then uninstall where its releases are, or wait.

Called by `Runtime.delete` from kopf's delete handler (`herd.operator.handlers`), which
holds the finalizer until this returns and retries it when it raises `TransientError`
(with the delay given). Steps:

1. The Stack's keeper loop is told to stop and awaited, so no pass installs anything
   after this deletion looked (a pass in progress finishes first; while it runs, the
   deletion is retried shortly).
2. `spec.deletionPolicy: Orphan` keeps every release: nothing is contacted.
3. Otherwise the releases are uninstalled on the clusters the status records as holding
   them (`status.releaseClusters`) plus the current targets; every cluster when that
   record is missing or was cut at its bound. Only the releases the Stack's ownership
   record holds (`herd.plan.ownership`), and as the Stack's identity: its grants are read now
   (`Runtime.grants`), and a cluster they no longer cover is not contacted: it is
   orphaned, with a warning Event naming it.
4. `herd.plan.deletion.decide` says whether deletion is done (then the ownership record goes
   too). If not, the Stack shows phase
   Deleting and a `Deleting` condition naming the clusters or releases it waits for, and
   the next attempt comes after an exponential backoff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from herd.api.v1 import DeletionPolicy
from herd.errors import TransientError
from herd.operator.events import Logger, log_release
from herd.operator.keeper import parse_status, previous_targets
from herd.plan import deletion
from herd.plan.results import State, now
from herd.plan.retry import jitter, next_delay
from herd.status.build import deleting_status

if TYPE_CHECKING:
    from herd.operator.index import StackKey
    from herd.operator.runtime import Runtime

KEEPER_WAIT = 10.0  # seconds to wait for a pass in progress before retrying the deletion


async def delete(runtime: Runtime, body: Any, logger: Logger) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    attempt = runtime.deletion_attempts.get(key, 0) + 1
    runtime.deletion_attempts[key] = attempt
    if not await runtime.stop_keeping(key, timeout=KEEPER_WAIT):
        raise TransientError("waiting for the Stack's current pass to finish", delay=5.0)
    previous = runtime.last_status(key) or parse_status(body)
    policy = (body.get("spec") or {}).get("deletionPolicy") or DeletionPolicy.DELETE
    if policy == DeletionPolicy.ORPHAN:
        logger.info("deletionPolicy Orphan: the Stack's releases stay where they are")
        runtime.forget(key)
        return
    recorded = previous_targets(previous)
    grants = await runtime.grants(key[0])  # TransientError: retried, never done as admin
    uid = meta.get("uid")
    result = await runtime.engine.delete(
        *key, lambda r: log_release(r, logger, None), only=recorded, grants=grants, uid=uid
    )
    unchecked = dict(result.unreachable)
    unchecked.update({s.cluster_id: s.reason for s in result.skipped})
    for cluster in result.denied:
        unchecked.pop(cluster, None)
    for r in result.releases:  # labelled for the Stack but not its to remove: said, kept
        if r.state is State.SKIPPED and r.message:
            logger.warning("Release %s on cluster %s: %s", r.key.name, r.key.cluster, r.message)
    failed: dict[str, str] = {}
    for r in result.releases:
        if r.state in (State.FAILED, State.UNREACHABLE):
            failed.setdefault(
                r.key.cluster, f"{r.chart} ({r.key.namespace}/{r.key.name}): {r.message}"
            )
    if recorded is None:  # no record: what the status knew, and what the pass found
        holding = set(result.holding) & (set(previous.target_clusters) if previous else set()) | {
            r.key.cluster for r in result.releases
        }
        for cluster, reason in unchecked.items():
            if cluster not in holding:
                logger.warning("Cluster %s could not be checked for releases: %s", cluster, reason)
    else:
        holding = set(recorded)
    verdict = deletion.decide(
        holding=holding,
        inventory=await runtime.inventory_ids(),
        unchecked={c: why for c, why in unchecked.items() if c not in failed},
        failed=failed,
        orphan=deletion.orphaned_clusters(meta.get("annotations") or {}),
        denied=result.denied,
    )
    _report(runtime, key, verdict, logger)
    if not verdict.done:
        delay = next_delay(
            attempt,
            rand=jitter(),
            base=runtime.config.retry_seconds,
            cap=runtime.config.backoff_max_seconds,
        )
        message = f"{verdict.message()}; retrying in {delay:.0f}s"
        status = deleting_status(verdict.reason, message, meta.get("generation"), now(), previous)
        try:
            await runtime.patch_status(key, status)
            runtime.remember_status(key, status)
        except Exception as error:  # status is a courtesy here; the retry is what counts
            logger.warning("Cannot write the deleting status: %s", error)
        raise TransientError(message, delay=delay)
    await runtime.engine.forget(*key, uid=uid)  # TransientError: the deletion is retried
    runtime.forget(key)


def _report(runtime: Runtime, key: StackKey, verdict: deletion.Verdict, logger: Logger) -> None:
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
    events = runtime.events(key)
    for reason, text in warnings:
        logger.warning("%s", text)
        if events is not None:
            events.warning(reason, text)
