"""Operator settings, read once from the environment (the Deployment sets them).

| variable | default | meaning |
|---|---|---|
| HERD_NAMESPACE | herd-system | the controller's namespace (kubeconfig Secrets, add-on config) |
| HERD_RANCHER_NAMESPACES | fleet-default | namespaces of Rancher provisioning Clusters ("" = off) |
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

Hostile input and shutdown (`herd.helm.worker`, `herd.operator.shutdown`):

| variable | default | meaning |
|---|---|---|
| HERD_CHECK_SECONDS | 10 | a render check or CRD read of a chart is stopped after this long |
| HERD_CHECK_MEMORY_MB | 1024 | address-space limit of the worker processes that run those checks |
| HERD_CHECK_WORKERS | 2 | worker processes (checks at once) |
| HERD_EXIT_SECONDS | shutdown + 10 | once stopping (SIGTERM, Lease lost), exit within this |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from herd.plan.decide import DEFAULT_STUCK_SECONDS
from herd.plan.egress import DEFAULT_DENY_CIDRS, EgressPolicy, parse_hosts, parse_networks
from herd.plan.tenancy import Mode
from herd.rollout.gates import DEFAULT_LIMITS

EXIT_MARGIN_SECONDS = 10.0  # after helm's budget: kopf's own stop, the Lease hand-over


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str = "herd-system"
    rancher_namespaces: tuple[str, ...] = ("fleet-default",)
    resync_seconds: float = 300.0
    retry_seconds: float = 30.0
    fleet_seconds: float = 10.0
    max_clusters: int = DEFAULT_LIMITS.clusters
    max_helm: int = DEFAULT_LIMITS.helm
    max_rows: int = 100
    addons_configmap: str = "herd-addons"
    metrics_port: int = 8080
    health_port: int = 8081
    backoff_max_seconds: float = 300.0
    stuck_seconds: float = DEFAULT_STUCK_SECONDS
    workdir: Path | None = None  # None: `work_directory()`'s default
    shard: str = ""
    lease_seconds: float = 15.0
    shutdown_seconds: float = 15.0
    tenancy: Mode = Mode.GRANTS
    # Egress and credentials (issue 20): the deny list for tenant repository hosts
    # (`herd.plan.egress`), and whether kubeconfig `exec`/`auth-provider` plugins may run.
    egress: EgressPolicy = field(default_factory=lambda: _egress({}))
    allow_exec_kubeconfigs: bool = False
    # hostile input and shutdown
    check_seconds: float = 10.0
    check_memory_mb: int = 1024
    check_workers: int = 2
    exit_seconds: float | None = None  # None: shutdown_seconds + EXIT_MARGIN_SECONDS

    @property
    def exit_budget(self) -> float:
        """Seconds from the decision to stop to the process's exit, at the latest."""
        if self.exit_seconds is not None:
            return self.exit_seconds
        return self.shutdown_seconds + EXIT_MARGIN_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        def number(name: str, default: float) -> float:
            raw = env.get(name)
            try:
                return float(raw) if raw else default
            except ValueError:
                raise ValueError(f"{name} must be a number, got {raw!r}") from None

        base = cls()
        rancher = env.get("HERD_RANCHER_NAMESPACES")
        return cls(
            namespace=env.get("HERD_NAMESPACE", base.namespace),
            rancher_namespaces=(
                tuple(n.strip() for n in rancher.split(",") if n.strip())
                if rancher is not None
                else base.rancher_namespaces
            ),
            resync_seconds=number("HERD_RESYNC_SECONDS", base.resync_seconds),
            retry_seconds=number("HERD_RETRY_SECONDS", base.retry_seconds),
            fleet_seconds=number("HERD_FLEET_SECONDS", base.fleet_seconds),
            max_clusters=int(number("HERD_MAX_CLUSTERS", base.max_clusters)),
            max_helm=int(number("HERD_MAX_HELM", base.max_helm)),
            max_rows=int(number("HERD_MAX_ROWS", base.max_rows)),
            addons_configmap=env.get("HERD_ADDONS_CONFIGMAP", base.addons_configmap),
            metrics_port=int(number("HERD_METRICS_PORT", base.metrics_port)),
            health_port=int(number("HERD_HEALTH_PORT", base.health_port)),
            backoff_max_seconds=number("HERD_BACKOFF_MAX_SECONDS", base.backoff_max_seconds),
            stuck_seconds=number("HERD_STUCK_SECONDS", base.stuck_seconds),
            workdir=Path(env["HERD_WORKDIR"]) if env.get("HERD_WORKDIR") else None,
            shard=_shard(env.get("HERD_SHARD", base.shard)),
            lease_seconds=number("HERD_LEASE_SECONDS", base.lease_seconds),
            shutdown_seconds=number("HERD_SHUTDOWN_SECONDS", base.shutdown_seconds),
            tenancy=_tenancy(env.get("HERD_TENANCY", "")),
            egress=_egress(env),
            allow_exec_kubeconfigs=_flag(env, "HERD_ALLOW_EXEC_KUBECONFIGS"),
            check_seconds=number("HERD_CHECK_SECONDS", base.check_seconds),
            check_memory_mb=int(number("HERD_CHECK_MEMORY_MB", base.check_memory_mb)),
            check_workers=int(number("HERD_CHECK_WORKERS", base.check_workers)),
            exit_seconds=number("HERD_EXIT_SECONDS", 0) or None,
        )

    def work_directory(self) -> Path:
        """HERD_WORKDIR, else /tmp/herd-<namespace>-<shard or 'default'>."""
        return self.workdir or Path(f"/tmp/herd-{self.namespace}-{self.shard or 'default'}")  # noqa: S108 (C5: 0700, own)


# A label value that also fits the Lease's name and the shard's finalizer name
# (herd.suse.com/finalizer-<shard>: at most 63 characters after the slash).
_SHARD = re.compile(r"[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?")


def _egress(env: Mapping[str, str]) -> EgressPolicy:
    """HERD_EGRESS_*: the deny list (default: RKE2/k3s and kubeadm ranges) and allow lists."""
    deny = env.get("HERD_EGRESS_DENY_CIDRS", DEFAULT_DENY_CIDRS)
    return EgressPolicy(
        deny_networks=parse_networks(deny, "HERD_EGRESS_DENY_CIDRS"),
        allow_networks=parse_networks(
            env.get("HERD_EGRESS_ALLOW_CIDRS", ""), "HERD_EGRESS_ALLOW_CIDRS"
        ),
        allow_hosts=parse_hosts(env.get("HERD_EGRESS_ALLOW_HOSTS", "")),
    )


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def _tenancy(raw: str) -> Mode:
    value = raw.strip().lower() or Mode.GRANTS.value
    try:
        return Mode(value)
    except ValueError:
        raise ValueError(f"HERD_TENANCY must be grants or open, got {raw!r}") from None


def _shard(raw: str) -> str:
    shard = raw.strip()
    if shard and not _SHARD.fullmatch(shard):
        raise ValueError(
            f"HERD_SHARD must be lowercase letters, digits and '-' (at most 53), got {raw!r}"
        )
    return shard
