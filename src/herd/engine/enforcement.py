"""`security: {enforce: true}` in a pass: the Stack's NeuVector admission rule on each of
its clusters, and gone from the clusters it left and at its deletion.

After the pass's rollout (NeuVector and its CRDs come first, as add-ons), the Stack's rule
(`herd.plan.admission`: one rule in NeuVector's single `local` object) is put on every
reachable target, with each cluster's own
kubeconfig (`herd.addons.admission` says why not the tenant's), and removed from the
clusters the Stack left. A Stack with NeuVector but without `enforce` removes it (enforce
turned off); a Stack without NeuVector makes no call. `Engine.delete` removes it on every
cluster it reaches. A suspended Stack, `--stage` and dry runs write nothing.

What failed is in `StackResult.enforcement` (cluster -> why) and the log; the releases'
rows are not changed by it. Callers: `herd.engine.engine`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from herd.addons.admission import drop_rule, put_rule
from herd.api.status import AdmissionStatus, SkippedCluster
from herd.api.v1 import Stack, Toggle
from herd.engine.protocols import StackResult
from herd.plan.admission import OBJECT_NAME, rule_id, stack_rule
from herd.rollout.target import Target

logger = logging.getLogger("herd.engine.engine")
_Call = Callable[[Target], str]
MESSAGE_LIMIT = 200  # as a row's message


async def enforce_rules(
    stack: Stack, result: StackResult, reachable: Sequence[Target], departed: Sequence[Target]
) -> None:
    """Write or remove the Stack's admission rule (see the module) into `result`."""
    spec = stack.spec
    enforcement = spec.enforcement
    drop_from = list(departed)
    if enforcement is not None:
        namespaces = {chart.namespace for chart in spec.charts}
        rule = stack_rule(stack.namespace, stack.name, namespaces, enforcement.fail_on)
        await _each(result, reachable, lambda t: put_rule(t.kubeconfig, rule))
        result.admission = AdmissionStatus(
            rule=f"{OBJECT_NAME}/{rule_id(stack.namespace, stack.name)}",
            fail_on=enforcement.fail_on,
            namespaces=sorted(namespaces),
            problems=[
                SkippedCluster(cluster_id=c, reason=why[:MESSAGE_LIMIT])
                for c, why in sorted(result.enforcement.items())
            ],
        )
    elif spec.security_toggle is Toggle.ENABLED:
        drop_from += reachable
    else:
        return
    await _each(result, drop_from, lambda t: drop_rule(t.kubeconfig, stack.namespace, stack.name))


async def drop_rules(stack_namespace: str, stack_name: str, result: StackResult,
                     targets: Sequence[Target]) -> None:  # fmt: skip
    """The Stack is deleted: its rule goes from every cluster in `targets`."""
    await _each(result, targets, lambda t: drop_rule(t.kubeconfig, stack_namespace, stack_name))


async def _each(result: StackResult, targets: Sequence[Target], call: _Call) -> None:
    found = await asyncio.gather(*(asyncio.to_thread(call, t) for t in targets))
    for target, problem in zip(targets, found, strict=True):
        if problem:
            logger.warning("Admission rule on cluster %s: %s", target.cluster, problem)
            result.enforcement[target.cluster] = problem
