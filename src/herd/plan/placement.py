"""Which of a Stack's targeted clusters `targets.placement.pickN` picks, and why. Pure.

Inputs are gathered elsewhere (`herd.addons.gpu.supply`, with each cluster's own
kubeconfig): per candidate cluster, its allocatable `nvidia.com/gpu` and how many of them
are free for this Stack (allocatable minus what the other pods on its nodes request; the
Stack's own pods count as free, so a Stack never pushes itself away).

The rule (KubeFleet's PickN with property sorting, made sticky):

- a cluster *fits* when its `sortBy` figure (`gpuFree` or `gpuAllocatable`) is at least
  `need` (the Stack's GPU requests on one cluster as last seen, at least 1);
- the clusters picked last time stay picked while they fit, and also while their GPUs
  cannot be read (a failed read never moves a Stack);
- the free slots go to the fitting candidates with the highest figure (ties: cluster id);
- a picked cluster that no longer fits is replaced only when another cluster fits; while
  none does, it stays (moving would gain nothing);
- a cluster replaced this way is *leaving*: make-before-break, it keeps its releases
  until those of the picked clusters are all Deployed (`herd.engine.moves`), and stays
  leaving (`previous` of the next pass's `leaving`) until then.

Candidates are the targeted clusters that are ready and granted: placement never reaches a
cluster outside a tenant's grant. Callers: `herd.engine.engine` (each pass), tests.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from herd.api.targets import Placement


@dataclass(frozen=True)
class GpuSupply:
    """One cluster's GPUs as placement sees them; None: not read (`problem` says why)."""

    allocatable: int | None = None
    free: int | None = None
    problem: str = ""


@dataclass(frozen=True)
class PlacementDecision:
    """The picked clusters (in pick order), one sentence why, and why each other was not."""

    picked: tuple[str, ...]
    reason: str
    not_picked: Mapping[str, str] = field(default_factory=dict)
    moved: bool = False  # a cluster picked last time is no longer picked
    # Clusters placement moved the Stack away from that still hold its releases: they keep
    # them until the picked clusters' releases are all Deployed (make-before-break).
    leaving: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placed:
    """What the previous pass left of placement (`herd.status.placement.remembered`): the
    clusters it picked, the GPUs the Stack needed on one cluster, the leaving clusters."""

    previous: tuple[str, ...] = ()
    need: int = 0
    leaving: tuple[str, ...] = ()


def figure(placement: Placement, supply: GpuSupply | None) -> int | None:
    """The number `sortBy` ranks by; None when unknown."""
    if supply is None:
        return None
    return supply.free if placement.sort_by == "gpuFree" else supply.allocatable


def pick(
    placement: Placement,
    candidates: Sequence[str],
    supply: Mapping[str, GpuSupply],
    previous: Collection[str] = (),
    need: int = 1,
    *,
    leaving: Collection[str] = (),
) -> PlacementDecision:
    """The clusters `placement.pickN` picks among `candidates` (see the module)."""
    wanted = placement.pick_n or len(candidates)
    need = max(need, 1)
    unit = "free" if placement.sort_by == "gpuFree" else "allocatable"

    def fits(cluster: str) -> bool:
        value = figure(placement, supply.get(cluster))
        return value is not None and value >= need

    def unknown(cluster: str) -> bool:
        return figure(placement, supply.get(cluster)) is None

    before = [c for c in previous if c in candidates]
    kept = [c for c in before if fits(c) or unknown(c)][:wanted]
    others = sorted(
        (c for c in candidates if c not in kept and fits(c)),
        key=lambda c: (-(figure(placement, supply.get(c)) or 0), c),
    )
    picked = kept + others[: wanted - len(kept)]
    # A previous pick that no longer fits stays while no other cluster can take its slot.
    stuck = [c for c in before if c not in picked][: max(wanted - len(picked), 0)]
    picked += stuck
    moved = any(c not in picked for c in before)
    gone = sorted({c for c in (*before, *leaving) if c in candidates and c not in picked})
    not_picked = {c: _why_not(c, supply.get(c), placement, unit, need) for c in candidates}
    for cluster in picked:
        del not_picked[cluster]
    return PlacementDecision(
        tuple(picked),
        _reason(picked, set(before), supply, placement, stuck=bool(stuck), need=need)
        if candidates
        else "no targeted cluster is ready and granted",
        dict(sorted(not_picked.items())),
        moved,
        tuple(gone),
    )


def _describe(cluster: str, supply: GpuSupply | None, placement: Placement, unit: str) -> str:
    value = figure(placement, supply)
    if value is None:
        problem = supply.problem if supply is not None else ""
        return f"{cluster} (GPUs unknown{': ' + problem if problem else ''})"
    return f"{cluster} ({value} {unit} GPU{'s' if value != 1 else ''})"


def _why_not(
    cluster: str, supply: GpuSupply | None, placement: Placement, unit: str, need: int
) -> str:
    value = figure(placement, supply)
    if value is None:
        problem = supply.problem if supply is not None else "not read"
        return f"GPUs unknown: {problem}"
    if value < need:
        return f"{value} {unit} GPUs, fewer than the {need} needed"
    return f"{value} {unit} GPUs; pickN {placement.pick_n} is taken by clusters with more"


def _reason(
    picked: Sequence[str],
    before: Collection[str],
    supply: Mapping[str, GpuSupply],
    placement: Placement,
    *,
    stuck: bool,
    need: int,
) -> str:
    unit = "free" if placement.sort_by == "gpuFree" else "allocatable"
    if not picked:
        return f"no targeted cluster has {need} {unit} GPU{'s' if need != 1 else ''}"
    described = ", ".join(_describe(c, supply.get(c), placement, unit) for c in picked)
    how = f"pickN {placement.pick_n} by {placement.sort_by}"
    if stuck:
        return f"{how}: kept {described}: no other cluster has {need} {unit}"
    if set(picked) <= set(before):
        return f"{how}: kept {described}: still fits"
    return f"{how}: picked {described}"
