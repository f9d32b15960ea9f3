"""How a Stack rolls out across its clusters: `RolloutSpec` and its `RolloutStage`s (which
clusters, how many at once, a pause or an approval gate after each, the health gates
(`herd.api.checks.Checks`) a stage must pass).

Callers: `herd.api.v1` (`spec.rollout`), `herd.plan.stages`, `herd.rollout`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from herd.api.checks import Checks
from herd.api.common import (
    DNS1123_LABEL,
    GO_DURATION,
    SpecModel,
    duration_seconds,
)
from herd.api.targets import LabelSelector
from herd.names import APPROVE_ANNOTATION

APPROVAL = "approval"  # a stage pause that waits for APPROVE_ANNOTATION=<stage>
IMPLICIT_STAGE = "remaining"  # the last stage: targeted clusters no stage selects
HALT: Literal["Halt"] = "Halt"
ROLLBACK: Literal["Rollback"] = "Rollback"
SCOPE_STAGE = "Stage"  # roll back the failed clusters of the failed stage
SCOPE_ROLLOUT = "Rollout"  # and every cluster this rollout already moved
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


class RolloutStage(SpecModel):
    name: str = Field(
        max_length=63,
        pattern=DNS1123_LABEL,
        description=(
            "The stage's name (DNS-1123 label), unique in the Stack; what "
            f"{APPROVE_ANNOTATION}=<name> approves."
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
            f"{APPROVE_ANNOTATION}=<stage name>."
        ),
    )

    checks: Checks | None = Field(
        default=None,
        description=(
            "Health gates of this stage, merged over rollout.checks: a field set here "
            "replaces the Stack-wide one, metrics are merged by name."
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


class RolloutSpec(SpecModel):
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
    checks: Checks | None = Field(
        default=None,
        description=(
            "Health gates of every stage: a stage succeeds only when each check passes on "
            "each of its clusters for the whole soak (its pause; one evaluation without one)."
        ),
    )

    on_failure: Literal["Halt", "Rollback"] = Field(
        default=HALT,
        description=(
            "When a stage fails (more failed clusters than maxFailures): Halt stops the "
            "rollout where it is; Rollback also returns clusters to their last good "
            "revisions (see scope), in reverse dependency order, then halts. Either way "
            "the Stack stays halted on this generation until the spec changes or "
            f"{APPROVE_ANNOTATION}=<failed stage> approves a retry."
        ),
    )
    scope: Literal["Stage", "Rollout"] | None = Field(
        default=None,
        description=(
            "What onFailure: Rollback returns: Stage (the default) the failed clusters of "
            "the failed stage; Rollout also every cluster this rollout already moved "
            "(the stages before it). Only with onFailure: Rollback."
        ),
    )

    @model_validator(mode="after")
    def _scope_needs_rollback(self) -> RolloutSpec:
        if self.scope is not None and self.on_failure != ROLLBACK:
            raise ValueError(
                f"scope: {self.scope} applies only with onFailure: {ROLLBACK} "
                f"(onFailure is {self.on_failure})"
            )
        return self

    @property
    def rollback_scope(self) -> str | None:
        """What a failed stage rolls back: Stage or Rollout; None with onFailure Halt."""
        if self.on_failure != ROLLBACK:
            return None
        return self.scope or SCOPE_STAGE

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
