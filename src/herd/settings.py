"""Herd's configuration: every `HERD_*` environment variable is read here, and only here.

A process reads its settings once, at start: the operator builds `Settings.from_env()` into
its `herd.operator.config.OperatorConfig` (the Deployment sets the variables); the CLI needs
only `HelmSettings` (`HERD_HELM`), which `herd.helm.environment.HelmEnvironment` reads when it is
given none. A variable that does not parse raises `ValueError` naming it. Tests build a
`Settings` or pass a mapping to `from_env`. Pure: imports nothing of Herd.

| variable | default | meaning |
|---|---|---|
| HERD_NAMESPACE | herd-system | the controller's namespace (kubeconfig Secrets, add-on config) |
| HERD_RANCHER_NAMESPACES | fleet-default,fleet-local | Rancher Clusters' namespaces ("" = off) |
| HERD_RESYNC_SECONDS | 300 | every Stack is re-checked this often (drift repair) |
| HERD_RETRY_SECONDS | 30 | retry delay after transient failures (unreachable cluster, …) |
| HERD_FLEET_SECONDS | 10 | how often the cluster inventory is compared for changes |
| HERD_MAX_CLUSTERS | 10 | clusters rolled out at once |
| HERD_MAX_HELM | 8 | helm processes at once |
| HERD_MAX_ROWS | 100 | deployment rows kept in a Stack's status |
| HERD_ADDONS_CONFIGMAP | herd-addons | ConfigMap with add-on chart settings |
| HERD_METRICS_PORT | 8080 | Prometheus metrics (0 = off) |
| HERD_BACKOFF_MAX_SECONDS | 300 | longest wait before retrying a cluster or a deletion |
| HERD_STUCK_SECONDS | 60 | age beyond a chart's timeout after which pending-* is stuck |
| HERD_WORKDIR | /tmp/herd-<ns>-<shard> | own dir (kubeconfigs, helm, charts); emptied at start |
| HERD_HEALTH_PORT | 8081 | liveness endpoint /healthz, leader and standby (0 = off) |
| HERD_SHARD | "" | handle only Stacks labelled herd.suse.com/shard=<this> ("" = unlabelled ones) |
| HERD_LEASE_SECONDS | 15 | leader-election Lease duration (renewed every fifth of it) |
| HERD_SHUTDOWN_SECONDS | 15 | on SIGTERM, running helm may finish for this long (< pod grace) |
| HERD_TENANCY | grants | grants: other namespaces' Stacks get what ClusterGrants give; open |
| HERD_EGRESS_DENY_CIDRS | RKE2, kubeadm ranges | tenant repos may not resolve here (plan.egress) |
| HERD_EGRESS_ALLOW_CIDRS | "" | tenant repos may resolve here (never metadata, API server) |
| HERD_EGRESS_ALLOW_HOSTS | "" | tenant repos on these `host` or `host:port` are never refused |
| HERD_ALLOW_EXEC_KUBECONFIGS | false | true: kubeconfigs may run `exec` / `auth-provider` |
| HERD_HELM | a Helm 4 on PATH, else helm beside Python | the helm executable (Helm 4 or 3) |
| HERD_PROMETHEUS_SERVICE | see below | each cluster's Prometheus Service (API server proxy) |

HERD_PROMETHEUS_SERVICE is `[https:]namespace/name:port`, by default Rancher Monitoring's
`cattle-monitoring-system/rancher-monitoring-prometheus:9090`; a cluster whose object is
annotated `herd.suse.com/prometheus-url` is asked at that URL instead
(`herd.addons.prometheus`).

Hostile input and shutdown (`herd.helm.worker`, `herd.operator.shutdown`):

| variable | default | meaning |
|---|---|---|
| HERD_CHECK_SECONDS | 10 | a render check or CRD read of a chart is stopped after this long |
| HERD_CHECK_MEMORY_MB | 1024 | address-space limit of the worker processes that run those checks |
| HERD_CHECK_WORKERS | 2 | worker processes (checks at once) |
| HERD_EXIT_SECONDS | shutdown + 10 | once stopping, exit within this (Lease lost: 10 s at most) |
| HERD_TEST_STALL_CHECKS | "" | tests only: "1" makes every check hang in a controller thread |

Settings whose default belongs to the layer that uses it (the rollout's limits, the stuck
age, the egress deny list) are None here when unset.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Tenancy = Literal["grants", "open"]

# A label value that also fits the Lease's name and the shard's finalizer name
# (herd.suse.com/finalizer-<shard>: at most 63 characters after the slash).
_SHARD = re.compile(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?")


@dataclass(frozen=True)
class HelmSettings:
    """What both faces need to run helm."""

    executable: str | None = None  # HERD_HELM; None: `herd.helm.environment.find_helm` picks

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HelmSettings:
        return cls(executable=_env(env).get("HERD_HELM") or None)


@dataclass(frozen=True)
class Settings:
    """The operator's settings, as the environment gives them (see the module's table)."""

    namespace: str = "herd-system"
    # Fleet workspaces: fleet-default (downstream clusters), fleet-local (the local cluster).
    rancher_namespaces: tuple[str, ...] = ("fleet-default", "fleet-local")
    resync_seconds: float = 300.0
    retry_seconds: float = 30.0
    fleet_seconds: float = 10.0
    max_clusters: int | None = None  # None: the rollout's default
    max_helm: int | None = None
    max_rows: int = 100
    addons_configmap: str = "herd-addons"
    metrics_port: int = 8080
    health_port: int = 8081
    backoff_max_seconds: float = 300.0
    stuck_seconds: float | None = None  # None: the planner's default
    workdir: Path | None = None
    shard: str = ""
    lease_seconds: float = 15.0
    shutdown_seconds: float = 15.0
    tenancy: Tenancy = "grants"
    egress_deny_cidrs: str | None = None  # None: the egress policy's default ranges
    egress_allow_cidrs: str = ""
    egress_allow_hosts: str = ""
    allow_exec_kubeconfigs: bool = False
    check_seconds: float = 10.0
    check_memory_mb: int = 1024
    check_workers: int = 2
    exit_seconds: float | None = None  # None: shutdown_seconds plus a margin
    stall_checks: bool = False
    # Parsed by `herd.addons.prometheus.PrometheusService.parse`, which names what is wrong.
    prometheus_service: str = "cattle-monitoring-system/rancher-monitoring-prometheus:9090"
    helm: HelmSettings = field(default_factory=HelmSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of `env` (default: this process's environment)."""
        env = _env(env)
        base = cls()
        number = _Numbers(env)
        rancher = env.get("HERD_RANCHER_NAMESPACES")
        return cls(
            namespace=env.get("HERD_NAMESPACE", base.namespace),
            rancher_namespaces=(
                tuple(n.strip() for n in rancher.split(",") if n.strip())
                if rancher is not None
                else base.rancher_namespaces
            ),
            resync_seconds=number.real("HERD_RESYNC_SECONDS", base.resync_seconds),
            retry_seconds=number.real("HERD_RETRY_SECONDS", base.retry_seconds),
            fleet_seconds=number.real("HERD_FLEET_SECONDS", base.fleet_seconds),
            max_clusters=number.whole_or_none("HERD_MAX_CLUSTERS"),
            max_helm=number.whole_or_none("HERD_MAX_HELM"),
            max_rows=number.whole("HERD_MAX_ROWS", base.max_rows),
            addons_configmap=env.get("HERD_ADDONS_CONFIGMAP", base.addons_configmap),
            metrics_port=number.whole("HERD_METRICS_PORT", base.metrics_port),
            health_port=number.whole("HERD_HEALTH_PORT", base.health_port),
            backoff_max_seconds=number.real("HERD_BACKOFF_MAX_SECONDS", base.backoff_max_seconds),
            stuck_seconds=number.real_or_none("HERD_STUCK_SECONDS"),
            workdir=Path(env["HERD_WORKDIR"]) if env.get("HERD_WORKDIR") else None,
            shard=_shard(env.get("HERD_SHARD", base.shard)),
            lease_seconds=number.real("HERD_LEASE_SECONDS", base.lease_seconds),
            shutdown_seconds=number.real("HERD_SHUTDOWN_SECONDS", base.shutdown_seconds),
            tenancy=_tenancy(env.get("HERD_TENANCY", "")),
            egress_deny_cidrs=env.get("HERD_EGRESS_DENY_CIDRS"),
            egress_allow_cidrs=env.get("HERD_EGRESS_ALLOW_CIDRS", ""),
            egress_allow_hosts=env.get("HERD_EGRESS_ALLOW_HOSTS", ""),
            allow_exec_kubeconfigs=_flag(env, "HERD_ALLOW_EXEC_KUBECONFIGS"),
            check_seconds=number.real("HERD_CHECK_SECONDS", base.check_seconds),
            check_memory_mb=number.whole("HERD_CHECK_MEMORY_MB", base.check_memory_mb),
            check_workers=number.whole("HERD_CHECK_WORKERS", base.check_workers),
            exit_seconds=number.real("HERD_EXIT_SECONDS", 0) or None,
            stall_checks=env.get("HERD_TEST_STALL_CHECKS") == "1",
            prometheus_service=env.get("HERD_PROMETHEUS_SERVICE") or base.prometheus_service,
            helm=HelmSettings.from_env(env),
        )


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


@dataclass(frozen=True)
class _Numbers:
    """Numbers of one environment; an empty variable is unset."""

    env: Mapping[str, str]

    def real_or_none(self, name: str) -> float | None:
        raw = self.env.get(name)
        try:
            return float(raw) if raw else None
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None

    def real(self, name: str, default: float) -> float:
        value = self.real_or_none(name)
        return default if value is None else value

    def whole_or_none(self, name: str) -> int | None:
        value = self.real_or_none(name)
        return None if value is None else int(value)

    def whole(self, name: str, default: int) -> int:
        value = self.whole_or_none(name)
        return default if value is None else value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def _tenancy(raw: str) -> Tenancy:
    value = raw.strip().lower() or "grants"
    if value == "grants":
        return "grants"
    if value == "open":
        return "open"
    raise ValueError(f"HERD_TENANCY must be grants or open, got {raw!r}")


def _shard(raw: str) -> str:
    shard = raw.strip()
    if shard and not _SHARD.fullmatch(shard):
        raise ValueError(
            f"HERD_SHARD must be lowercase letters, digits and '-' (at most 53), got {raw!r}"
        )
    return shard
