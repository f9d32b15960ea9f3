"""The GPU fit warning while helm waits: a release asking for GPUs its cluster lacks.

A release whose pods request `nvidia.com/gpu` on a cluster with none allocatable never
becomes ready: its pods stay Pending and `helm --wait` runs into its timeout. So while
helm waits, `watch_fit` reads the release's manifest as helm stored it (the pending
revision's release Secret, `ClusterHelm.manifest`, 5 seconds in, later again if helm has
not stored it yet), counts its GPU requests (`herd.addons.gpu.demand`) and the cluster's
allocatable GPUs (one Node list), and when they do not fit reports the release as
Deploying with the warning as its message. Cost: two API reads (no helm process) per
`--wait` install that lasts over 5 seconds, and a Node list when the release asks for GPUs.
It is a warning: helm goes on (a node may yet join, or a device plugin start); when helm
then fails, `herd.rollout.actions` keeps the warning in front of helm's message.

Anything that goes wrong here only means no early warning: the pass's status repeats the
check after helm is done (`herd.status.gpu`).

`fit_refusal` is the same check made a rule (`targets.placement.requireFit`): before an
install or upgrade, on the release as helm renders it, so a release that cannot fit is
not installed at all. Callers: `herd.rollout.actions`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from herd.addons.gpu.demand import largest_node, node_gpus
from herd.addons.images import bounded_manifest_facts
from herd.helm.client import ClusterHelm
from herd.plan.releases import DesiredRelease
from herd.status.gpu import FIT_WARNING, fit_warning

logger = logging.getLogger(__name__)
FIT_DELAYS = (5.0, 10.0, 20.0)  # seconds before each look at the stored manifest


async def watch_fit(
    helm: ClusterHelm,
    desired: DesiredRelease,
    warn: Callable[[str], Awaitable[None]],
    delays: Sequence[float] = FIT_DELAYS,
) -> None:
    """Report `warn(message)` once if the release's GPU requests cannot fit; cancelled
    by the caller when helm returns."""
    key = desired.key
    for delay in delays:
        await asyncio.sleep(delay)
        manifest = await helm.manifest(key.namespace, key.name, None)
        if manifest is None:
            continue  # helm has not stored the release yet
        demand = (await bounded_manifest_facts(manifest, key.namespace)).gpus
        if not demand.total:
            return
        try:
            nodes = await helm.nodes()
        except Exception as error:  # only the early warning is lost
            logger.info("Cannot list nodes of cluster %s: %s", key.cluster, type(error).__name__)
            return
        _, allocatable = node_gpus(nodes)
        warning = fit_warning(
            demand.total,
            key.cluster,
            allocatable,
            per_pod=demand.per_pod,
            largest=largest_node(nodes),
        )
        if warning:
            await warn(warning)
        return


REFUSED = "not installed: targets.placement.requireFit"


async def fit_refusal(helm: ClusterHelm, desired: DesiredRelease, manifest: str) -> str:
    """`requireFit`: why the release must not be installed on its cluster ("" when its
    GPU requests fit, or the cluster's nodes cannot be read: not knowing never refuses).
    `manifest`: the release as helm would render it (no cluster write was made)."""
    key = desired.key
    demand = (await bounded_manifest_facts(manifest, key.namespace)).gpus
    if not demand.total:
        return ""
    try:
        nodes = await helm.nodes()
    except Exception as error:  # the install goes on; the fit warning may still come
        logger.info("Cannot list nodes of cluster %s: %s", key.cluster, type(error).__name__)
        return ""
    _, allocatable = node_gpus(nodes)
    warning = fit_warning(
        demand.total, key.cluster, allocatable, per_pod=demand.per_pod, largest=largest_node(nodes)
    )
    if not warning:
        return ""
    why = warning.removeprefix(f"{FIT_WARNING}: ").split(";", 1)[0]
    return f"{REFUSED} ({why}); retried when the cluster's nodes change"
