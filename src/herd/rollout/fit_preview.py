"""`herd plan` and `spec.mode: DryRun` under `targets.placement.requireFit`: which releases
Apply would refuse, read-only.

For each release the preview would install, upgrade or recover, the chart is rendered as
helm would (`helm template`, no cluster write) and checked with the rule Apply uses
(`herd.addons.gpu.fit.fit_refusal`: its GPU requests against the cluster's allocatable).
The caller makes a refused one a `Decision(REFUSED, why)`, so both faces show the
same words as Apply's row. A chart or cluster that cannot be read refuses nothing (as in Apply: not
knowing never refuses). Callers: `herd.engine.engine` (`Engine.preview`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from herd.addons.gpu.fit import fit_refusal
from herd.errors import HerdError
from herd.helm.chart_cache import ChartCache
from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmEnvironment
from herd.plan.decide import Action, Decision
from herd.plan.releases import DesiredRelease, ObservedRelease, ReleaseKey
from herd.rollout.target import Target

logger = logging.getLogger(__name__)
_WRITES = (Action.INSTALL, Action.UPGRADE, Action.RECOVER)


async def refused_by_fit(
    env: HelmEnvironment,
    targets: Sequence[Target],
    rows: Sequence[tuple[DesiredRelease | None, ObservedRelease | None, Decision]],
) -> dict[ReleaseKey, str]:
    """Release -> why `requireFit` would refuse it, among the preview's `rows` (desired,
    observed, decision); see the module."""
    clusters = {t.cluster: t for t in targets}
    cache = ChartCache(env)
    refused: dict[ReleaseKey, str] = {}
    for desired, observed, decision in rows:
        target = clusters.get(desired.key.cluster) if desired is not None else None
        if desired is None or target is None or decision.action not in _WRITES:
            continue
        why = await _refusal(env, cache, target, desired, observed)
        if why:
            refused[desired.key] = why
    return refused


async def _refusal(
    env: HelmEnvironment,
    cache: ChartCache,
    target: Target,
    desired: DesiredRelease,
    observed: ObservedRelease | None,
) -> str:
    helm = ClusterHelm(env, target.cluster, target.kubeconfig)
    try:
        chart_dir = await cache.get(desired.chart, desired.source)
        upgrade = observed is not None and observed.status != "uninstalled"
        manifest = await helm.render(desired, chart_dir, upgrade=upgrade)
        return await fit_refusal(helm, desired, manifest)
    except HerdError as error:  # the preview shows the action; Apply checks again
        logger.info("Cannot check the GPU fit of %s: %s", desired.key, type(error).__name__)
        return ""
    finally:
        helm.close()
