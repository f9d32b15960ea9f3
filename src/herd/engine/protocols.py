"""What the engine takes from its faces and gives back: the protocols of the inventory,
the values and chart-source readers and the add-ons (implemented in `herd.clusters`,
`herd.kube.values_from`, `herd.kube.chart_secrets`, `herd.addons`, or by the CLI), and one pass's
result
(`StackResult`) and plan line (`Preview`). Re-exported by `herd.engine.engine`.

Callers: `herd.engine.engine`, and through it `herd.operator` and `herd.cli`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from herd.api.charts import ChartSpec
from herd.api.status import AdmissionStatus, SkippedCluster
from herd.api.v1 import Stack, StackSpec
from herd.plan.chart_sources import ChartSource
from herd.plan.clusters import Cluster
from herd.plan.decide import Decision
from herd.plan.desired import SourceKey, StackPlan
from herd.plan.drift import ReleaseDrift
from herd.plan.lastgood import Record
from herd.plan.ownership import Owned, Releases, StackRef
from herd.plan.placement import PlacementDecision
from herd.plan.releases import DesiredRelease, ObservedRelease, ReleaseKey, Values
from herd.plan.results import ReleaseResult
from herd.rollout.staged import StagedOutcome


class Inventory(Protocol):
    """Where clusters and their kubeconfigs come from (`herd.clusters.inventory.Inventory`)."""

    async def clusters(self) -> list[Cluster]: ...

    async def kubeconfig(self, cluster: Cluster) -> Path: ...


class ValuesReader(Protocol):
    """Reads `values.from` sources (ConfigMap/Secret keys in the Stack's namespace)."""

    async def read(
        self, namespace: str, spec: StackSpec, *, service_account: str | None = None
    ) -> Mapping[SourceKey, Values]: ...


class SourcesReader(Protocol):
    """Reads private chart sources' Secrets (`herd.kube.chart_secrets`): chart name -> source."""

    async def read(
        self, namespace: str, spec: StackSpec, *, service_account: str | None = None
    ) -> Mapping[str, ChartSource]: ...


class AddOns(Protocol):
    """The add-on charts prepended to a Stack and their per-cluster values (`herd.addons`).

    `refresh` runs before each plan (it may read configuration and Secrets); `charts` and
    `cluster_values` are then pure lookups.
    """

    async def refresh(self) -> None: ...

    def charts(self, spec: StackSpec) -> list[ChartSpec]: ...

    def cluster_values(self, cluster: Cluster, chart: ChartSpec) -> Values: ...

    def stack_charts(self, stack: Stack) -> list[ChartSpec]:
        """Charts of the Stack's own the add-ons bring (appended to its charts)."""
        ...


class OwnershipStore(Protocol):
    """Where a Stack's record of the releases Herd installed is kept (`herd.plan.ownership`;
    `herd.kube.owned`: the management cluster for the operator, each downstream
    cluster for the CLI). `clusters`: cluster id -> kubeconfig of the clusters concerned.

    `load` raises `TransientError` when the record cannot be read at all; `save` never
    raises (a failed write keeps the old record); `drop` forgets the Stack's record."""

    async def load(self, stack: StackRef, clusters: Mapping[str, Path]) -> Owned: ...

    async def save(
        self,
        stack: StackRef,
        before: Owned,
        after: Mapping[str, Releases],
        clusters: Mapping[str, Path],
    ) -> None: ...

    async def drop(self, stack: StackRef, clusters: Mapping[str, Path]) -> None: ...


class LastGoodStore(Protocol):
    """Where a Stack's last good revisions are kept (`herd.plan.lastgood`; `herd.kube.lastgood`:
    the management cluster for the operator, each downstream cluster's herd-system for the
    CLI). `load` raises `TransientError` when the record cannot be read at all; `save`
    never raises; `drop` forgets the Stack's record."""

    async def load(self, stack: StackRef, clusters: Mapping[str, Path]) -> Record: ...

    async def save(self, stack: StackRef, record: Record, clusters: Mapping[str, Path]) -> None: ...

    async def drop(self, stack: StackRef, clusters: Mapping[str, Path]) -> None: ...


@dataclass
class StackResult:
    """What one pass did: targets, skipped clusters and one result per release."""

    plan: StackPlan | None
    targets: list[Cluster]
    skipped: list[SkippedCluster]
    releases: list[ReleaseResult] = field(default_factory=list)
    # Clusters whose helm releases could not be read, so nothing there changed: id -> why.
    # For targets this also shows in their rows (Unreachable); for clusters the Stack left
    # (or all clusters, on delete) it is the only trace.
    unreachable: dict[str, str] = field(default_factory=dict)
    # Cluster ids that after the pass still hold, or may hold (could not be read, deferred,
    # skipped), releases of this Stack. The operator persists it.
    holding: frozenset[str] = frozenset()
    # Clusters the Stack's grants do not cover (also in `skipped`): not contacted at all.
    denied: set[str] = field(default_factory=set)
    # Every targeted cluster, unusable ones included (what stages are made of).
    members: list[Cluster] = field(default_factory=list)
    # A staged pass (spec.rollout, spec.suspend or --stage): where the rollout stands.
    rollout: StagedOutcome | None = None
    # Seconds until the Stack's next drift check is due (None: no check is scheduled).
    drift_wait: float | None = None
    # targets.placement.pickN: which clusters it picked and why (None: no pickN).
    placement: PlacementDecision | None = None
    # security.enforce: clusters whose admission rule could not be written or removed.
    enforcement: dict[str, str] = field(default_factory=dict)
    # security.enforce: the rule written this pass, for the status (None: not enforced).
    admission: AdmissionStatus | None = None

    @property
    def chart_count(self) -> int:
        return len(self.plan.charts) if self.plan else 0


@dataclass(frozen=True)
class Preview:
    """One line of `herd plan`: the action for a release, and why."""

    key: ReleaseKey
    desired: DesiredRelease | None
    observed: ObservedRelease | None
    decision: Decision
    drift: ReleaseDrift | None = None  # checked now, read-only (`herd plan`)

    @property
    def action(self) -> str:
        return self.decision.action.value

    @property
    def reason(self) -> str:
        return self.decision.reason
