"""Where a Stack goes: `Targets` (cluster ids and a Kubernetes-style `LabelSelector`).

Callers: `herd.api.v1` (`spec.targets`), `herd.api.charts` and `herd.api.rollout` (per-cluster
values and stages select clusters the same way), `herd.api.grants`, `herd.plan.targets`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from herd.api.common import (
    SpecModel,
)


class LabelSelectorRequirement(SpecModel):
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


class LabelSelector(SpecModel):
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


class Placement(SpecModel):
    """GPU-aware placement among the targeted clusters (`herd.plan.placement`)."""

    pick_n: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=(
            "Deploy to the N targeted clusters with the most GPUs (sortBy); the choice is "
            "sticky while those clusters still fit. Releases on a cluster no longer picked "
            "are uninstalled (the Stack moved)."
        ),
    )
    sort_by: Literal["gpuFree", "gpuAllocatable"] = Field(
        default="gpuFree",
        description=(
            "gpuFree: allocatable nvidia.com/gpu minus what other pods request; "
            "gpuAllocatable: allocatable nvidia.com/gpu."
        ),
    )
    require_fit: bool = Field(
        default=False,
        description=(
            "true: a release whose GPU requests exceed its cluster's allocatable GPUs is not "
            "installed there (status Skipped, no helm call), retried as nodes change."
        ),
    )

    @model_validator(mode="after")
    def _does_something(self) -> Placement:
        if self.pick_n is None and not self.require_fit:
            raise ValueError("placement needs pickN or requireFit: true")
        return self


class Targets(SpecModel):
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
    placement: Placement | None = Field(
        default=None,
        description=(
            "GPU-aware placement: pickN clusters by sortBy among those targeted, and/or "
            "requireFit to refuse releases whose GPU requests a cluster cannot hold."
        ),
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> Targets:
        if not self.cluster_ids and self.selector is None:
            raise ValueError("targets needs clusterIds or a selector")
        return self
