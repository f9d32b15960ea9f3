"""The `Stack` resource of `herd.suse.com/v1`: spec and status as pydantic models.

Data only, no I/O. These models are the single source of truth: the CRD in `crds/` is
generated from them (`herd.api.crd`), the operator and the CLI parse every Stack body
through them, and `herd.status.build` builds the status from them. Field descriptions become
`kubectl explain stack.spec...` text, so they are written for users.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from herd.names import GROUP

VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Stack"
PLURAL = "stacks"
SINGULAR = "stack"
SHORT_NAMES = ("stk",)

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
REPO_URL = r"^(https?|oci)://[^\s]+$"
GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
# A chart name in a repository, or a path reference below it (e.g. `app`, `team/app`):
# segments start with a letter or digit, so nothing reaches helm as a flag or climbs up.
CHART_REF = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$"
# A chart version or version constraint; never a flag.
CHART_VERSION = r"^[^-\s].*$"
# Kubernetes object names (DNS-1123 subdomain) and ConfigMap/Secret keys.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def duration_seconds(duration: str) -> float:
    """Seconds in a Go duration such as `15m` or `1h30m` (already validated)."""
    return sum(
        float(number) * _DURATION_SECONDS[unit] for number, unit in _DURATION_PART.findall(duration)
    )


class _Model(BaseModel):
    """Camel-case on the wire, snake_case in Python; unknown spec fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class Toggle(enum.StrEnum):
    """`enabled` / `disabled`; YAML booleans are accepted too."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class DeletionPolicy(enum.StrEnum):
    """What deleting a Stack does to its releases (`spec.deletionPolicy`)."""

    DELETE = "Delete"
    ORPHAN = "Orphan"


# Inline in the CRD, as a string enum (a $ref would be inlined with its keys reordered).
DeletionPolicyField = Annotated[
    DeletionPolicy,
    WithJsonSchema({"enum": [policy.value for policy in DeletionPolicy], "type": "string"}),
]


def _toggle(value: object) -> object:
    if isinstance(value, bool):
        return Toggle.ENABLED if value else Toggle.DISABLED
    return value


# A structural schema cannot type a field "string or boolean", and the API server cannot
# compile a CEL rule on an untyped field, so the CRD leaves these two open and the
# controller checks them (an invalid value makes the Stack Failed, naming the field).
ToggleField = Annotated[
    Toggle,
    BeforeValidator(_toggle),
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]


class LabelSelectorRequirement(_Model):
    key: str = Field(min_length=1, description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] = Field(
        default_factory=list,
        description="Label values; non-empty for In and NotIn, empty for Exists and DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(_Model):
    match_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Clusters whose labels contain every one of these key/value pairs.",
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        description="Set-based requirements on cluster labels; all must hold.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> LabelSelector:
        if not self.match_labels and not self.match_expressions:
            raise ValueError(
                "selector needs matchLabels or matchExpressions "
                "(an empty selector would target every cluster)"
            )
        return self


class Targets(_Model):
    cluster_ids: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description=(
            "Clusters by Rancher cluster ID (e.g. c-m-abc12) or by name. "
            "Unioned with the selector's clusters."
        ),
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="Clusters by label (Kubernetes LabelSelector semantics), following the fleet.",
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> Targets:
        if not self.cluster_ids and self.selector is None:
            raise ValueError("targets needs clusterIds or a selector")
        return self


class ValuesSource(_Model):
    kind: Literal["ConfigMap", "Secret"] = Field(
        description="ConfigMap or Secret, in the Stack's own namespace."
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Name of the ConfigMap or Secret.",
    )
    key: str = Field(
        default="values.yaml",
        min_length=1,
        max_length=253,
        pattern=DATA_KEY,
        description="Key holding a YAML object of Helm values.",
    )
    optional: bool = Field(
        default=False, description="When true, a missing object or key is not an error."
    )


class ClusterOverride(_Model):
    cluster_ids: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Clusters by Rancher cluster ID or by name; unioned with the selector's.",
    )
    selector: LabelSelector | None = Field(
        default=None, description="Clusters by label (Kubernetes LabelSelector semantics)."
    )
    inline: dict[str, Any] = Field(
        default_factory=dict,
        description="Helm values for the selected clusters, merged over inline and envs.",
    )

    @model_validator(mode="after")
    def _selects_something(self) -> ClusterOverride:
        if not self.cluster_ids and self.selector is None:
            raise ValueError("a clusters entry needs clusterIds or a selector")
        return self


class ChartValues(_Model):
    inline: dict[str, Any] = Field(
        default_factory=dict,
        description="Helm values written in the Stack (free-form).",
    )
    envs: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Values per environment: the entry named like spec.env is merged over inline.",
    )
    from_: list[ValuesSource] = Field(
        default_factory=list,
        alias="from",
        description=(
            "ConfigMap/Secret keys with Helm values, merged last and in order. "
            "Secret values never appear in status, events or logs."
        ),
    )
    clusters: list[ClusterOverride] = Field(
        default_factory=list,
        description=(
            "Per-cluster overrides, merged in order after envs and before from, on the "
            "clusters each entry selects."
        ),
    )
    templated: bool = Field(
        default=False,
        description=(
            "true: string values of inline, envs and clusters may use the cluster's facts, "
            "{{ .Cluster.id }}, {{ .Cluster.name }} and {{ .Cluster.labels.KEY }}, rendered "
            "per cluster (values from ConfigMaps/Secrets are not templated)."
        ),
    )


class ChartCredentials(_Model):
    secret_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description=(
            "Secret in the Stack's namespace: kubernetes.io/basic-auth (username, password) "
            "for https:// repositories and oci:// registries, or kubernetes.io/dockerconfigjson "
            "for oci:// registries. Its content never appears in status, events or logs."
        ),
    )


class ChartSpec(_Model):
    name: str = Field(
        max_length=53,
        pattern=DNS1123_LABEL,
        description=(
            "Unique key of this chart within the Stack (DNS-1123 label); what dependsOn "
            "refers to. Also the default chart and release name."
        ),
    )
    chart: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        json_schema_extra={"pattern": CHART_REF},  # checked below, with a clear message
        description=(
            "Chart name in the repository, or a path reference below it (team/app); "
            "defaults to name."
        ),
    )
    repo: str = Field(
        pattern=REPO_URL,
        description="Chart repository URL: https://, http:// or oci://.",
    )
    version: str = Field(
        min_length=1,
        max_length=128,
        json_schema_extra={"pattern": CHART_VERSION},
        description="Chart version to install (exact, e.g. 0.59.0); must not start with '-'.",
    )
    namespace: str = Field(
        default="default",
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Namespace in each target cluster; created when missing.",
    )
    release_name: str | None = Field(
        default=None,
        max_length=53,
        pattern=DNS1123_LABEL,
        description="Helm release name; defaults to name.",
    )
    values: ChartValues = Field(
        default_factory=ChartValues, description="Helm values for this chart."
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Names of charts in this Stack that must be deployed first, in every cluster.",
    )
    wait: bool = Field(
        default=False,
        description="Wait until the release's resources are ready (helm --wait).",
    )
    timeout: str = Field(
        default="5m",
        pattern=GO_DURATION,
        description="Go duration bounding each helm operation, e.g. 15m (helm --timeout).",
    )
    atomic: bool = Field(
        default=False,
        description="Roll back (or uninstall, on first install) when the operation fails.",
    )
    crds: Literal["Skip", "Create", "CreateReplace"] = Field(
        default="Create",
        description=(
            "What happens to the CustomResourceDefinitions in the chart's crds/ directories "
            "(its subcharts' included), as Flux's CRD policy: Create (helm's behaviour) "
            "creates missing ones on install and never changes them; Skip installs none "
            "(helm --skip-crds); CreateReplace makes Herd apply them on every install and "
            "upgrade, server-side as field manager herd, before helm runs."
        ),
    )

    credentials: ChartCredentials | None = Field(
        default=None, description="Credentials for a private repository or registry."
    )
    ca_secret_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description=(
            "Secret in the Stack's namespace whose key ca.crt holds the PEM CA that signed "
            "the repository's certificate (a private CA)."
        ),
    )
    insecure_skip_tls_verify: bool = Field(
        default=False,
        alias="insecureSkipTLSVerify",
        description="Do not verify the repository's TLS certificate (labs only).",
    )
    plain_http: bool = Field(
        default=False,
        alias="plainHTTP",
        description="Talk plain HTTP to an oci:// registry (labs only); oci:// repos only.",
    )

    @field_validator("plain_http")
    @classmethod
    def _plain_http_oci_only(cls, value: bool, info: ValidationInfo) -> bool:
        repo = info.data.get("repo")
        if value and isinstance(repo, str) and not repo.startswith("oci://"):
            raise ValueError(
                "plainHTTP is for oci:// registries only; use an http:// repo URL instead"
            )
        return value

    @field_validator("chart")
    @classmethod
    def _chart_reference(cls, value: str | None) -> str | None:
        if value is not None and not re.match(CHART_REF, value):
            raise ValueError(
                "must be a chart name or a path below the repository (letters, digits, "
                f"'.', '_', '-' and '/', starting with a letter or digit), got {value!r}"
            )
        return value

    @field_validator("version")
    @classmethod
    def _version_not_a_flag(cls, value: str) -> str:
        if not re.match(CHART_VERSION, value):
            raise ValueError(f"must be a chart version such as 1.2.3, got {value!r}")
        return value

    @property
    def chart_name(self) -> str:
        return self.chart or self.name

    @property
    def release(self) -> str:
        return self.release_name or self.name

    @property
    def timeout_seconds(self) -> float:
        return duration_seconds(self.timeout)


APPROVAL = "approval"  # a stage pause that waits for herd.suse.com/approve=<stage>
IMPLICIT_STAGE = "remaining"  # the last stage: targeted clusters no stage selects
MAX_STAGES = 20
_PERCENT = re.compile(r"^([0-9]{1,3})%$")


def _max_concurrent(value: object) -> object:
    """A positive number, or a percentage of the stage's clusters such as "25%"."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number or a percentage such as '25%', got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value
    if isinstance(value, str):
        if value.isdigit():
            return _max_concurrent(int(value))
        match = _PERCENT.match(value)
        if match is None or not 1 <= int(match.group(1)) <= 100:
            raise ValueError(
                f"must be a number or a percentage from 1% to 100% such as '25%', got {value!r}"
            )
        return value
    raise ValueError(f"must be a number or a percentage such as '25%', got {value!r}")


MaxConcurrent = Annotated[
    int | str,
    BeforeValidator(_max_concurrent),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "description": (
                "Clusters of the stage deployed at once: a number, or a percentage of the "
                "stage's clusters such as '25%' (rounded down, at least 1). Default: all."
            ),
        }
    ),
]


class RolloutStage(_Model):
    name: str = Field(
        max_length=63,
        pattern=DNS1123_LABEL,
        description=(
            "The stage's name (DNS-1123 label), unique in the Stack; what "
            "herd.suse.com/approve=<name> approves."
        ),
    )
    cluster_ids: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Targeted clusters of this stage by id or name; unioned with the selector.",
    )
    selector: LabelSelector | None = Field(
        default=None, description="Targeted clusters of this stage by label."
    )
    max_concurrent: MaxConcurrent | None = None
    pause: str | None = Field(
        default=None,
        description=(
            "After the stage succeeds, before the next one starts: a soak time (Go duration "
            "such as 10m), or 'approval' to wait for the annotation "
            "herd.suse.com/approve=<stage name>."
        ),
    )

    @field_validator("pause")
    @classmethod
    def _pause(cls, value: str | None) -> str | None:
        if value is not None and value != APPROVAL and not re.match(GO_DURATION, value):
            raise ValueError(
                f"must be a Go duration such as 90s or 10m, or 'approval', got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _selects(self) -> RolloutStage:
        if not self.cluster_ids and self.selector is None:
            raise ValueError(f"stage {self.name!r} needs clusterIds or a selector")
        return self

    @property
    def pause_seconds(self) -> float | None:
        """The soak time in seconds; None for no pause or an approval gate."""
        if self.pause is None or self.pause == APPROVAL:
            return None
        return duration_seconds(self.pause)


class RolloutSpec(_Model):
    stages: list[RolloutStage] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description=(
            "Stages in order; a cluster belongs to the first stage that selects it, and "
            f"targeted clusters no stage selects form a last stage named {IMPLICIT_STAGE!r}. "
            "A stage starts when every cluster of the stage before is deployed and that "
            "stage's pause is over."
        ),
    )
    max_failures: int = Field(
        default=0,
        ge=0,
        description=(
            "Failed clusters tolerated before the rollout halts: past it no new cluster "
            "starts (running helm work finishes)."
        ),
    )

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[RolloutStage]) -> list[RolloutStage]:
        seen: set[str] = set()
        for stage in stages:
            if stage.name == IMPLICIT_STAGE:
                raise ValueError(
                    f"stage name {IMPLICIT_STAGE!r} is reserved for the implicit last stage"
                )
            if stage.name in seen:
                raise ValueError(f"stage name {stage.name!r} is used twice; names must be unique")
            seen.add(stage.name)
        return stages


class StackSpec(_Model):
    env: str = Field(
        default="",
        description="Environment name (e.g. dev, staging, prod); selects values.envs entries.",
    )
    security: ToggleField = Field(
        default=Toggle.DISABLED,
        description="enabled: deploy NeuVector first in every target cluster and report scans.",
    )
    observability: ToggleField = Field(
        default=Toggle.DISABLED,
        description="enabled: deploy the SUSE Observability agent first in every target cluster.",
    )
    targets: Targets = Field(description="Where the Stack is deployed.")
    charts: list[ChartSpec] = Field(
        min_length=1, description="Helm charts to deploy, ordered by dependsOn."
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        description=(
            "A ServiceAccount of the Stack's namespace: Herd reads values.from ConfigMaps and "
            "Secrets as this ServiceAccount (impersonation), so a Stack ships only what it may "
            "read. Required, with HERD_TENANCY=grants, for a Stack outside Herd's namespace "
            "that uses values.from."
        ),
    )
    mode: Literal["Apply", "DryRun"] = Field(
        default="Apply",
        description=(
            "Apply deploys. DryRun makes no helm write: each status row says what Apply would "
            "do (status Planned, action install, upgrade, uninstall, conflict or nothing)."
        ),
    )
    deletion_policy: DeletionPolicyField = Field(
        default=DeletionPolicy.DELETE,
        description=(
            "What deleting the Stack does to its releases: Delete uninstalls them from every "
            "cluster that holds them (waiting for unreachable ones); Orphan leaves them."
        ),
    )
    suspend: bool = Field(
        default=False,
        description=(
            "true: no helm writes at all (no install, upgrade or uninstall, drift included); "
            "status says Suspended. Set false to resume. Deleting a suspended Stack still "
            "follows deletionPolicy."
        ),
    )
    rollout: RolloutSpec | None = Field(
        default=None,
        description=(
            "Progressive delivery: clusters in stages (canary first), with pauses, approvals "
            "and a failure budget. Without it every cluster is deployed at once (bounded)."
        ),
    )


# ---------------------------------------------------------------------------------------
# Status


class _StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_StatusModel):
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


class DeploymentRow(_StatusModel):
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
            "retried until they or the spec change, or herd.suse.com/reconcile-at is set anew."
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
            "uninstall, nothing, conflict, invalid, recover, wait or held."
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


class SecurityStatus(_StatusModel):
    neu_vector_enabled: bool = Field(default=False, description="security: enabled.")
    scan_status: str = Field(default="", description="Pending, Scanning, Completed or Unavailable.")
    vulnerabilities: int = Field(default=0, description="Vulnerabilities in deployed images.")
    critical_issues: int = Field(default=0, description="Critical vulnerabilities.")


class ObservabilityStatus(_StatusModel):
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


class ClusterResources(_StatusModel):
    cluster_id: str = Field(description="The target cluster.")
    gpu_capacity: int | None = Field(
        default=None, description="nvidia.com/gpu capacity summed over the cluster's nodes."
    )
    gpu_allocatable: int | None = Field(
        default=None, description="nvidia.com/gpu allocatable summed over the cluster's nodes."
    )
    message: str | None = Field(default=None, description="Why the nodes could not be read.")


class SkippedCluster(_StatusModel):
    cluster_id: str = Field(description="The cluster ID or name that was skipped.")
    reason: str = Field(description="Why it was skipped (never includes secret content).")


class StageStatus(_StatusModel):
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


class RolloutStatus(_StatusModel):
    stage: str = Field(default="", description="The stage being rolled out or waited on.")
    state: str = Field(
        default="Progressing",
        description="Progressing, Paused, WaitingForApproval, Halted, Complete or Suspended.",
    )
    message: str = Field(default="", description="What the rollout does or waits for.")
    stages: list[StageStatus] = Field(
        default_factory=list, description="Each stage, in order (bounded by the stage limit)."
    )


class StackStatus(_StatusModel):
    phase: str = Field(
        default="Pending",
        description="Pending, Deploying, Deployed, Degraded, Failed, Deleting or DryRun.",
    )
    reconcile_at: str | None = Field(
        default=None,
        description="The herd.suse.com/reconcile-at annotation value last acted upon.",
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
    security: SecurityStatus | None = Field(
        default=None, description="NeuVector scan summary (security: enabled)."
    )
    observability: ObservabilityStatus | None = Field(
        default=None, description="SUSE Observability agent summary (observability: enabled)."
    )
    rollout: RolloutStatus | None = Field(
        default=None, description="Where a staged rollout stands (spec.rollout or suspend)."
    )


class Stack(BaseModel):
    """A whole Stack document as stored in Kubernetes or in a YAML file."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: Literal["herd.suse.com/v1"] = Field(alias="apiVersion")
    kind: Literal["Stack"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: StackSpec
    status: StackStatus | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")
