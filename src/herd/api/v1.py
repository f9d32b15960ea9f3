"""The `Stack` resource of `herd.suse.com/v1`: spec and status as pydantic models.

Data only, no I/O. These models are the single source of truth: the CRD in `crds/` is
generated from them (`herd.api.crd`), the operator and the CLI parse every Stack body
through them, and `herd.status.build` builds the status from them. Field descriptions become
`kubectl explain stack.spec...` text, so they are written for users.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from herd.api.charts import ChartSpec
from herd.api.common import (
    SpecModel,
)
from herd.api.drift import DriftSpec
from herd.api.rollout import RolloutSpec
from herd.api.status import StackStatus
from herd.api.targets import Targets
from herd.names import GROUP

VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Stack"
PLURAL = "stacks"
SINGULAR = "stack"
SHORT_NAMES = ("stk",)


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


class SecuritySpec(SpecModel):
    """`security: {enforce: true, failOn: High}`: NeuVector deployed, and enforced."""

    enforce: bool = Field(
        default=False,
        description=(
            "true: Herd also creates NeuVector's NvAdmissionControlSecurityRule for the Stack's "
            "namespaces on each cluster, denying images with vulnerabilities at or above failOn."
        ),
    )
    fail_on: Literal["High", "Critical"] = Field(
        default="High",
        description="The lowest vulnerability severity the admission rule denies.",
    )


def _security(value: object) -> object:
    """A toggle (string or boolean) or a `SecuritySpec` object; anything else is refused
    with one message naming what is allowed."""
    if isinstance(value, bool | Toggle | SecuritySpec):
        return _toggle(value)
    if isinstance(value, str):
        if value in {t.value for t in Toggle}:
            return Toggle(value)
        raise ValueError("Input should be 'enabled' or 'disabled', or {enforce: true}")
    if isinstance(value, dict):
        try:
            return SecuritySpec.model_validate(value)
        except ValidationError as error:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(details) from None
    raise ValueError("Input should be 'enabled' or 'disabled', or {enforce: true}")


SecurityField = Annotated[
    Toggle | SecuritySpec,
    BeforeValidator(_security),
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]


class StackSpec(SpecModel):
    env: str = Field(
        default="",
        description="Environment name (e.g. dev, staging, prod); selects values.envs entries.",
    )
    security: SecurityField = Field(
        default=Toggle.DISABLED,
        description=(
            "enabled: deploy NeuVector first in every target cluster and report scans; "
            "{enforce: true, failOn: High|Critical}: also deny vulnerable images in the "
            "Stack's namespaces with NeuVector's admission control."
        ),
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
    drift: DriftSpec | None = Field(
        default=None,
        description=(
            "Changes made inside deployed releases (a scaled Deployment, an edited ConfigMap, "
            "a deleted Service): mode Warn (default) reports them, Correct restores them, "
            "Disabled ignores them; checked every interval (default 10m)."
        ),
    )
    rollout: RolloutSpec | None = Field(
        default=None,
        description=(
            "Progressive delivery: clusters in stages (canary first), with pauses, approvals "
            "and a failure budget. Without it every cluster is deployed at once (bounded)."
        ),
    )

    @model_validator(mode="after")
    def _checks(self) -> StackSpec:
        """A security check reads NeuVector's scans: the NeuVector add-on must be on. A
        metric's `charts` name charts of the Stack."""
        if self.rollout is None:
            return self
        names = {c.name for c in self.charts}
        layers = [("rollout.checks", self.rollout.checks)]
        layers += [(f"rollout.stages[{s.name}].checks", s.checks) for s in self.rollout.stages]
        for where, checks in layers:
            if checks is None:
                continue
            if checks.security is not None and self.security_toggle is not Toggle.ENABLED:
                raise ValueError(
                    f"{where}.security needs security: enabled (NeuVector's scan verdicts)"
                )
            for metric in checks.metrics:
                unknown = sorted(set(metric.charts) - names)
                if unknown:
                    raise ValueError(
                        f"{where}.metrics[{metric.name}].charts: no chart named "
                        f"{', '.join(unknown)} in spec.charts"
                    )
        return self

    @property
    def security_toggle(self) -> Toggle:
        """`security` as a toggle: an object (`SecuritySpec`) means enabled."""
        return Toggle.ENABLED if isinstance(self.security, SecuritySpec) else self.security

    @property
    def enforcement(self) -> SecuritySpec | None:
        """The admission-control settings when `security.enforce` is true, else None."""
        security = self.security
        return security if isinstance(security, SecuritySpec) and security.enforce else None


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
