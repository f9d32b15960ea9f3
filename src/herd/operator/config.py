"""The operator's settings, typed for its layers: built once from `herd.settings.Settings`.

`herd.settings` reads every `HERD_*` variable (its table documents them); `OperatorConfig.of`
turns those values into the types the operator's layers use (the tenancy `Mode`, the
`EgressPolicy`, the rollout's limits, the check workers' `Limits`) and fills in the defaults
that belong to those layers.

Callers: `herd.operator.handlers` (at start), `herd.operator.runtime`, tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from herd.helm import worker
from herd.plan.decide import DEFAULT_STUCK_SECONDS
from herd.plan.egress import DEFAULT_DENY_CIDRS, EgressPolicy, parse_hosts, parse_networks
from herd.plan.tenancy import Mode
from herd.rollout.gates import DEFAULT_LIMITS
from herd.settings import HelmSettings, Settings

T = TypeVar("T")
LOST_EXIT_SECONDS = 10.0  # a leader that lost its Lease exits within this (at most)
EXIT_MARGIN_SECONDS = 10.0  # after helm's budget: kopf's own stop, the Lease hand-over


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str = Settings.namespace
    rancher_namespaces: tuple[str, ...] = Settings.rancher_namespaces
    resync_seconds: float = Settings.resync_seconds
    retry_seconds: float = Settings.retry_seconds
    fleet_seconds: float = Settings.fleet_seconds
    max_clusters: int = DEFAULT_LIMITS.clusters
    max_helm: int = DEFAULT_LIMITS.helm
    max_rows: int = Settings.max_rows
    addons_configmap: str = Settings.addons_configmap
    metrics_port: int = Settings.metrics_port
    health_port: int = Settings.health_port
    backoff_max_seconds: float = Settings.backoff_max_seconds
    stuck_seconds: float = DEFAULT_STUCK_SECONDS
    workdir: Path | None = None  # None: `work_directory()`'s default
    shard: str = Settings.shard
    lease_seconds: float = Settings.lease_seconds
    shutdown_seconds: float = Settings.shutdown_seconds
    tenancy: Mode = Mode.GRANTS
    # Egress and credentials (issue 20): the deny list for tenant repository hosts
    # (`herd.plan.egress`), and whether kubeconfig `exec`/`auth-provider` plugins may run.
    egress: EgressPolicy = field(default_factory=lambda: _egress(Settings()))
    allow_exec_kubeconfigs: bool = Settings.allow_exec_kubeconfigs
    # hostile input and shutdown
    check_seconds: float = Settings.check_seconds
    check_memory_mb: int = Settings.check_memory_mb
    check_workers: int = Settings.check_workers
    exit_seconds: float | None = None  # None: shutdown_seconds + EXIT_MARGIN_SECONDS
    stall_checks: bool = False  # tests: every check hangs in a controller thread
    helm: HelmSettings = field(default_factory=HelmSettings)
    # Each cluster's Prometheus Service, for the stages' metric checks (`herd.engine.checks`).
    prometheus_service: str = Settings.prometheus_service

    @property
    def exit_budget(self) -> float:
        """Seconds from the decision to stop to the process's exit, at the latest."""
        if self.exit_seconds is not None:
            return self.exit_seconds
        return self.shutdown_seconds + EXIT_MARGIN_SECONDS

    @property
    def lost_exit_budget(self) -> float:
        """`exit_budget` for a leader that lost its Lease: its helm is killed at once and no
        new helm starts, so nothing is left to wait for but kopf's stop and the exit."""
        return min(self.exit_budget, LOST_EXIT_SECONDS)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """The configuration of `env` (default: this process's environment)."""
        return cls.of(Settings.from_env(env))

    @classmethod
    def of(cls, settings: Settings) -> OperatorConfig:
        base = cls()
        return cls(
            namespace=settings.namespace,
            rancher_namespaces=settings.rancher_namespaces,
            resync_seconds=settings.resync_seconds,
            retry_seconds=settings.retry_seconds,
            fleet_seconds=settings.fleet_seconds,
            max_clusters=_or(settings.max_clusters, base.max_clusters),
            max_helm=_or(settings.max_helm, base.max_helm),
            max_rows=settings.max_rows,
            addons_configmap=settings.addons_configmap,
            metrics_port=settings.metrics_port,
            health_port=settings.health_port,
            backoff_max_seconds=settings.backoff_max_seconds,
            stuck_seconds=_or(settings.stuck_seconds, base.stuck_seconds),
            workdir=settings.workdir,
            shard=settings.shard,
            lease_seconds=settings.lease_seconds,
            shutdown_seconds=settings.shutdown_seconds,
            tenancy=Mode(settings.tenancy),
            egress=_egress(settings),
            allow_exec_kubeconfigs=settings.allow_exec_kubeconfigs,
            check_seconds=settings.check_seconds,
            check_memory_mb=settings.check_memory_mb,
            check_workers=settings.check_workers,
            exit_seconds=settings.exit_seconds,
            stall_checks=settings.stall_checks,
            helm=settings.helm,
            prometheus_service=settings.prometheus_service,
        )

    def worker_limits(self) -> worker.Limits:
        """The check workers' limits (`herd.helm.worker.configure`, once at start)."""
        return worker.Limits(
            self.check_seconds,
            self.check_memory_mb * worker.MIB,
            self.check_workers,
            stall=self.stall_checks,
        )

    def work_directory(self) -> Path:
        """HERD_WORKDIR, else /tmp/herd-<namespace>-<shard or 'default'>."""
        return self.workdir or Path(f"/tmp/herd-{self.namespace}-{self.shard or 'default'}")  # noqa: S108 (C5: 0700, own)


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _egress(settings: Settings) -> EgressPolicy:
    """The deny list (default: RKE2/k3s and kubeadm ranges) and the allow lists."""
    deny = _or(settings.egress_deny_cidrs, DEFAULT_DENY_CIDRS)
    return EgressPolicy(
        deny_networks=parse_networks(deny, "HERD_EGRESS_DENY_CIDRS"),
        allow_networks=parse_networks(settings.egress_allow_cidrs, "HERD_EGRESS_ALLOW_CIDRS"),
        allow_hosts=parse_hosts(settings.egress_allow_hosts),
    )
