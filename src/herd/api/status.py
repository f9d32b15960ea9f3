"""What a Stack reports: `StackStatus`, its deployment rows, conditions, add-on and GPU
summaries and the staged rollout's progress. Unknown fields are ignored (a newer Herd's
status parses in an older one).

Callers: `herd.api.v1` (`Stack.status`), `herd.status` (which builds it), the operator's
status writer, the CLI.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)
from pydantic.alias_generators import to_camel

from herd.names import RECONCILE_AT


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(StatusModel):
    type: str = Field(description="Ready, Reconciling, Stalled, SecurityScanned, ...")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="The Stack generation this condition describes."
    )


class DriftRow(StatusModel):
    objects: int = Field(default=0, description="Objects of the release that drifted.")
    entries: list[str] = Field(
        default_factory=list,
        description="The first drifted fields, as kind/name: JSON pointer (or: missing).",
    )
    seen_at: str | None = Field(default=None, description="When this drift was first seen.")
    corrected_at: str | None = Field(
        default=None, description="When Herd last corrected drift of the release."
    )
    message: str = Field(
        default="", description="What could not be read or corrected (e.g. an immutable field)."
    )


class DeploymentRow(StatusModel):
    chart_name: str = Field(description="The chart's name in the Stack.")
    cluster_id: str = Field(description="The target cluster.")
    release_name: str = Field(default="", description="Helm release name.")
    namespace: str = Field(default="", description="Release namespace.")
    status: str = Field(
        description=(
            "Pending, Deploying, Deployed, Failed, Skipped, Uninstalling, Unreachable; "
            "Planned in DryRun mode."
        )
    )
    revision: int | None = Field(default=None, description="Helm release revision.")
    chart_version: str | None = Field(default=None, description="Deployed chart version.")
    message: str = Field(default="", description="Helm error or what is being waited on.")
    last_updated: str | None = Field(default=None, description="Last change (RFC 3339).")
    failed_config: str | None = Field(
        default=None,
        description=(
            "Digest of the chart, version and values whose install failed permanently; not "
            f"retried until they or the spec change, or {RECONCILE_AT} is set anew."
        ),
    )
    security_scan: str | None = Field(
        default=None, description="Passed, Failed or Pending (security: enabled)."
    )
    observability_metrics: str | None = Field(
        default=None, description="Active when the cluster's observability agent is ready."
    )
    action: str | None = Field(
        default=None,
        description=(
            "What the last pass did (Apply) or would do (DryRun): install, upgrade, "
            "uninstall, nothing, conflict, invalid, recover, wait, held or rollback."
        ),
    )
    gpu_requests: int | None = Field(
        default=None,
        description=(
            "nvidia.com/gpu the release's workloads request (requests, else limits) from its "
            "manifest: per pod x replicas (Jobs: parallelism), one pod per DaemonSet."
        ),
    )
    gpu_utilization: str | None = Field(
        default=None,
        description=(
            "Mean DCGM_FI_DEV_GPU_UTIL over the release's pods from dcgm-exporter, e.g. 75%; "
            "Unavailable (see gpuUtilizationReason) when it cannot be read. GPU releases only."
        ),
    )
    gpu_utilization_reason: str | None = Field(
        default=None, description="Why gpuUtilization is Unavailable."
    )
    drift: DriftRow | None = Field(
        default=None,
        description="Changes made inside the deployed release since helm applied it (spec.drift).",
    )


class SecurityStatus(StatusModel):
    neu_vector_enabled: bool = Field(default=False, description="security: enabled.")
    scan_status: str = Field(default="", description="Pending, Scanning, Completed or Unavailable.")
    vulnerabilities: int = Field(default=0, description="Vulnerabilities in deployed images.")
    critical_issues: int = Field(default=0, description="Critical vulnerabilities.")


class ObservabilityStatus(StatusModel):
    suse_observability_enabled: bool = Field(default=False, description="observability: enabled.")
    agents_deployed: int = Field(default=0, description="Clusters with the agent deployed.")
    agents_total: int = Field(default=0, description="Target clusters.")
    metrics_collected: bool = Field(default=False, description="Every agent's workloads are ready.")
    dashboards_available: int = Field(
        default=0,
        description="Herd's Grafana dashboard ConfigMaps found on the target clusters (read back).",
    )
    alerts_configured: int = Field(
        default=0,
        description="Alert rules of Herd's PrometheusRules found on the target clusters.",
    )


class ClusterResources(StatusModel):
    cluster_id: str = Field(description="The target cluster.")
    gpu_capacity: int | None = Field(
        default=None, description="nvidia.com/gpu capacity summed over the cluster's nodes."
    )
    gpu_allocatable: int | None = Field(
        default=None, description="nvidia.com/gpu allocatable summed over the cluster's nodes."
    )
    message: str | None = Field(default=None, description="Why the nodes could not be read.")


class SkippedCluster(StatusModel):
    cluster_id: str = Field(description="The cluster ID or name that was skipped.")
    reason: str = Field(description="Why it was skipped (never includes secret content).")


class CheckFailure(StatusModel):
    cluster_id: str = Field(description="The cluster a check failed (or holds).")
    message: str = Field(description="Which check and why (bounded).")


class PlacementStatus(StatusModel):
    clusters: list[str] = Field(
        default_factory=list, description="The clusters targets.placement.pickN picked."
    )
    reason: str = Field(default="", description="Why these clusters (their GPU figures).")
    not_picked: list[SkippedCluster] = Field(
        default_factory=list, description="The other candidates and why each was not picked."
    )
    last_change_time: str | None = Field(
        default=None, description="When the picked clusters last changed (RFC 3339)."
    )
    leaving: list[str] = Field(
        default_factory=list,
        description=(
            "Clusters placement moved the Stack away from: they keep its releases until "
            "those of the picked clusters are all Deployed."
        ),
    )


class AdmissionStatus(StatusModel):
    rule: str = Field(
        description="The Stack's rule: the NvAdmissionControlSecurityRule object / rule comment."
    )
    fail_on: str = Field(description="The lowest vulnerability severity it denies.")
    namespaces: list[str] = Field(default_factory=list, description="Where it denies.")
    problems: list[SkippedCluster] = Field(
        default_factory=list, description="Clusters where the rule could not be written."
    )


class StageStatus(StatusModel):
    name: str = Field(description="The stage's name.")
    done: int = Field(
        default=0, description="Clusters of the stage deployed at the current config."
    )
    total: int = Field(default=0, description="Clusters in the stage.")
    config: str | None = Field(
        default=None, description="Digest of the stage's desired releases when it succeeded."
    )
    succeeded_at: str | None = Field(
        default=None, description="When the stage last succeeded at that config (RFC 3339)."
    )
    approved: bool = Field(
        default=False, description="Its approval gate was passed at that config."
    )
    failed_checks: list[CheckFailure] = Field(
        default_factory=list,
        max_length=50,
        description=(
            "Clusters a health check (rollout checks) failed at this config: they count "
            "against maxFailures until the stage's config changes."
        ),
    )
    held_checks: list[CheckFailure] = Field(
        default_factory=list,
        max_length=50,
        description="Clusters a check holds back now (e.g. a vulnerable image), not failed.",
    )


class RollbackCluster(StatusModel):
    cluster_id: str = Field(description="The cluster rolled back.")
    state: str = Field(
        description=(
            "RolledBack (every changed release is back at its last good revision), "
            "Unchanged (nothing to return to), or Failed (see message)."
        )
    )
    message: str = Field(default="", description="Per release: what was done, or why not.")


class RollbackStatus(StatusModel):
    stage: str = Field(description="The stage whose failure triggered the rollback.")
    scope: str = Field(description="Stage or Rollout (spec.rollout.scope).")
    config: str = Field(
        default="",
        description="Digest of the rollout's configuration rolled back (held until it changes).",
    )
    at: str | None = Field(default=None, description="When the rollback ran (RFC 3339).")
    clusters: list[RollbackCluster] = Field(
        default_factory=list, description="Each cluster rolled back, in order (bounded)."
    )
    cluster_count: int = Field(default=0, description="Clusters rolled back, listed or not.")


class RolloutStatus(StatusModel):
    stage: str = Field(default="", description="The stage being rolled out or waited on.")
    state: str = Field(
        default="Progressing",
        description="Progressing, Paused, WaitingForApproval, Halted, Complete or Suspended.",
    )
    message: str = Field(default="", description="What the rollout does or waits for.")
    stages: list[StageStatus] = Field(
        default_factory=list, description="Each stage, in order (bounded by the stage limit)."
    )
    rollback: RollbackStatus | None = Field(
        default=None,
        description="The last rollback of this configuration (spec.rollout.onFailure: Rollback).",
    )


class StackStatus(StatusModel):
    phase: str = Field(
        default="Pending",
        description="Pending, Deploying, Deployed, Degraded, Failed, Deleting or DryRun.",
    )
    reconcile_at: str | None = Field(
        default=None,
        description=f"The {RECONCILE_AT} annotation value last acted upon.",
    )
    message: str = Field(default="", description="One sentence on where the Stack stands.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation last acted upon."
    )
    cluster_count: int = Field(default=0, description="Target clusters.")
    chart_count: int = Field(default=0, description="Charts per cluster, add-ons included.")
    target_clusters: list[str] = Field(
        default_factory=list,
        description="Cluster IDs the Stack targets now (bounded; clusterCount counts them all).",
    )
    skipped_clusters: list[SkippedCluster] = Field(
        default_factory=list,
        description="Targeted clusters that could not be used, and why (bounded).",
    )
    skipped_cluster_count: int = Field(
        default=0, description="Skipped clusters, including those left out of the list."
    )
    release_clusters: list[str] = Field(
        default_factory=list,
        description=(
            "Cluster IDs that hold or may hold this Stack's releases, unreachable and departed "
            "ones included: where deletion and departure clean up (bounded)."
        ),
    )
    release_cluster_count: int = Field(
        default=0,
        description="Clusters that hold or may hold releases; more than listed: check all.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Reconciling, Stalled and add-on conditions."
    )
    drifted_objects: int = Field(
        default=0, description="Drifted objects over every release (spec.drift)."
    )
    deployments: list[DeploymentRow] = Field(
        default_factory=list,
        description="One row per chart and cluster (failing rows first; bounded in size).",
    )
    deployment_counts: dict[str, int] = Field(
        default_factory=dict, description="Rows per status, including rows left out."
    )
    cluster_resources: list[ClusterResources] = Field(
        default_factory=list,
        description="GPU capacity and allocatable per target cluster (bounded).",
    )
    cluster_resource_count: int = Field(
        default=0, description="Clusters with resources read, including those left out."
    )
    placement: PlacementStatus | None = Field(
        default=None, description="GPU-aware placement's pick (targets.placement.pickN)."
    )
    admission: AdmissionStatus | None = Field(
        default=None, description="NeuVector admission rule of security.enforce."
    )
    security: SecurityStatus | None = Field(
        default=None, description="NeuVector scan summary (security: enabled)."
    )
    observability: ObservabilityStatus | None = Field(
        default=None, description="SUSE Observability agent summary (observability: enabled)."
    )
    rollout: RolloutStatus | None = Field(
        default=None, description="Where a staged rollout stands (spec.rollout or suspend)."
    )
