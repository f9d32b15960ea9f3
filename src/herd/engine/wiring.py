"""The engine as both faces build it: an inventory over cluster sources, and the engine.

`build_engine` is the one place an `Engine` is wired from its parts: the operator's
`herd.operator.runtime.Runtime` (Rancher and Secret sources, the management cluster's
values and chart Secrets, the ownership record there, its process-wide gates) and the
CLI's `herd.cli.fleet.Session` (kubeconfig files, values from `--values-kubeconfig` or
none, the ownership record downstream). What differs between them is passed in; how the
parts fit is here.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubernetes import client

from herd.clusters.drift import DriftMemory
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.readiness import ReadinessReader
from herd.clusters.sources import ClusterSource
from herd.engine.checks import LiveProbe, MetricSource, ScanSource
from herd.engine.engine import Engine
from herd.engine.protocols import (
    AddOns,
    LastGoodStore,
    OwnershipStore,
    SourcesReader,
    ValuesReader,
)
from herd.helm.environment import HelmEnvironment
from herd.kube.chart_secrets import KubeSourcesReader
from herd.kube.journal import OperationJournal
from herd.kube.values_from import KubeValuesReader
from herd.plan.decide import DEFAULT_STUCK_SECONDS
from herd.plan.egress import EgressPolicy
from herd.rollout.gates import Gates, Limits


def build_engine(
    sources: Sequence[ClusterSource],
    store: KubeconfigStore,
    env: HelmEnvironment,
    *,
    api: client.ApiClient | None,
    manager: str,
    ownership: OwnershipStore,
    addons: AddOns,
    limits: Limits,
    offline: tuple[ValuesReader, SourcesReader] | None = None,
    gates: Gates | None = None,
    stuck_seconds: float = DEFAULT_STUCK_SECONDS,
    egress: EgressPolicy | None = None,
    drift: DriftMemory | None = None,
    scans: ScanSource | None = None,
    metrics: MetricSource | None = None,
    journal: OperationJournal | None = None,
    lastgood: LastGoodStore | None = None,
) -> tuple[Inventory, Engine]:
    """The inventory of `sources` (kubeconfigs kept by `store`) and the engine over it.

    `api`: the cluster where `values.from` sources and chart Secrets are read; without
    one, `offline`'s readers say what cannot be read. `manager` names the caller in
    release labels ("operator" or "cli"). `scans` and `metrics`: what the stages'
    security and metric checks ask (`herd.engine.checks.LiveProbe`)."""
    inventory = Inventory(sources, store)
    if api is not None:
        values: ValuesReader | None = KubeValuesReader(api)
        secrets: SourcesReader | None = KubeSourcesReader(api)
    else:
        values, secrets = offline or (None, None)
    engine = Engine(
        inventory,
        env,
        limits=limits,
        values=values,
        sources=secrets,
        addons=addons,
        gates=gates,
        manager=manager,
        stuck_seconds=stuck_seconds,
        ownership=ownership,
        egress=egress,
        drift=drift,
        checks=LiveProbe(ReadinessReader(env), scans, metrics),
        journal=journal,
        lastgood=lastgood,
    )
    return inventory, engine
