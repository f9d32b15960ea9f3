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
| HERD_HEALTH_PORT | 8081 | kopf liveness endpoint /healthz (0 = off) |
| HERD_BACKOFF_MAX_SECONDS | 300 | longest wait before retrying a cluster or a deletion |
| HERD_WORKDIR | /tmp/herd-<ns>-<shard> | own dir (kubeconfigs, helm, charts); emptied at start |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str = "herd-system"
    rancher_namespaces: tuple[str, ...] = ("fleet-default",)
    resync_seconds: float = 300.0
    retry_seconds: float = 30.0
    fleet_seconds: float = 10.0
    max_clusters: int = 10
    max_helm: int = 8
    max_rows: int = 100
    addons_configmap: str = "herd-addons"
    metrics_port: int = 8080
    health_port: int = 8081
    backoff_max_seconds: float = 300.0
    workdir: Path | None = None  # None: `work_directory()`'s default

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
            workdir=Path(env["HERD_WORKDIR"]) if env.get("HERD_WORKDIR") else None,
        )

    def work_directory(self, shard: str = "") -> Path:
        """HERD_WORKDIR, else /tmp/herd-<namespace>-<shard or 'default'>."""
        return self.workdir or Path(f"/tmp/herd-{self.namespace}-{shard or 'default'}")  # noqa: S108 (C5: 0700, own)
