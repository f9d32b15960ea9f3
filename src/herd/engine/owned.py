"""The engine's side of the ownership record (`herd.plan.ownership`): whose record a pass uses,
and saving it after the pass. Re-exported by `herd.engine.engine`.

Callers: `herd.engine.engine` (`Engine.apply`, `delete`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from herd.api.v1 import Stack
from herd.engine.protocols import OwnershipStore
from herd.plan.ownership import Owned, StackRef, next_record
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult
from herd.rollout.scheduler import Rollout

logger = logging.getLogger("herd.engine.engine")


def stack_ref(stack: Stack) -> StackRef:
    """Whose ownership record: the Stack's namespace, name and (in Kubernetes) uid."""
    uid = stack.metadata.get("uid")
    return StackRef(stack.namespace, stack.name, str(uid) if uid else None)


async def save_record(
    store: OwnershipStore,
    ref: StackRef,
    owned: Owned,
    made: Sequence[Rollout],
    kubeconfigs: Mapping[str, Path],
    *,
    extra: Sequence[ReleaseResult] = (),
) -> None:
    """Save the record after a pass's rollouts (and `extra` rows after theirs: a
    rollback's): one write at most (none when nothing changed), never failing the pass
    (a failed write keeps the old record)."""
    observed: dict[str, set[str]] = {}
    results: list[ReleaseResult] = []
    shared: set[ReleaseKey] = set()
    for rollout in made:
        for cluster, ids in rollout.observed.items():
            observed.setdefault(cluster, set()).update(ids)
        results += rollout.results.values()
        shared |= rollout.shared
    after = next_record(owned, [*results, *extra], observed, shared)
    if after == owned.releases and not owned.migrating:
        return
    try:
        await asyncio.shield(store.save(ref, owned, after, kubeconfigs))
    except Exception:  # a store's bug: the pass's work stands, the old record stays
        logger.exception("Cannot save the ownership record of Stack %s", ref.owner)
