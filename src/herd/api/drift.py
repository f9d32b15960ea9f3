"""Drift handling in the spec: `spec.drift` and `charts[].drift` (`DriftSpec`), its ignore
rules (`DriftIgnore`, JSON pointers and an optional `DriftTarget`). Data only.

Every field is optional on the wire so a chart's `drift` overrides only what it sets;
`herd.plan.drift.effective` merges the two levels and fills the defaults (Warn, 10m).
Validation names the field (a bad pointer, a bad duration) before any helm call.

Callers: `herd.api.v1` (`spec.drift`), `herd.api.charts` (`charts[].drift`), `herd.plan.drift`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from herd.api.common import GO_DURATION, SpecModel, duration_seconds

DriftMode = Literal["Correct", "Warn", "Disabled"]
DEFAULT_MODE: DriftMode = "Warn"
DEFAULT_INTERVAL = "10m"
MIN_INTERVAL_SECONDS = 1.0
# RFC 6901: "" (the whole object) or "/"-separated tokens, "~" only as ~0 or ~1.
JSON_POINTER = r"^(/([^~/]|~[01])*)*$"
_POINTER = re.compile(JSON_POINTER)
MAX_PATHS = 64
MAX_RULES = 64


class DriftTarget(SpecModel):
    group: str | None = Field(
        default=None, max_length=253, description="API group ('' is the core group)."
    )
    kind: str | None = Field(default=None, max_length=63, description="Object kind.")
    name: str | None = Field(default=None, max_length=253, description="Object name.")
    namespace: str | None = Field(default=None, max_length=63, description="Object namespace.")


class DriftIgnore(SpecModel):
    paths: list[Annotated[str, Field(max_length=1024)]] = Field(
        min_length=1,
        max_length=MAX_PATHS,
        description=(
            "JSON pointers (RFC 6901) of fields never reported or corrected, e.g. "
            "/spec/replicas for an HPA-managed Deployment."
        ),
    )
    target: DriftTarget | None = Field(
        default=None, description="The objects the rule applies to; every object when unset."
    )

    @field_validator("paths")
    @classmethod
    def _pointers(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path or not _POINTER.match(path):
                raise ValueError(
                    f"{path!r} is not a JSON pointer (it starts with '/', and '~' is only "
                    "written ~0 or ~1)"
                )
        return paths


class DriftSpec(SpecModel):
    mode: DriftMode | None = Field(
        default=None,
        description=(
            "Warn (default): report changes made inside deployed releases (status, Events, "
            "metrics), write nothing. Correct: also restore them server-side as helm's field "
            "manager, without a new helm revision. Disabled: do not look."
        ),
    )
    interval: str | None = Field(
        default=None,
        json_schema_extra={"pattern": GO_DURATION},
        description="How often each release is checked, a Go duration (default 10m).",
    )
    ignore: list[DriftIgnore] = Field(
        default_factory=list,
        max_length=MAX_RULES,
        description="Fields never reported or corrected (a chart's rules add to the Stack's).",
    )
    force: bool | None = Field(
        default=None,
        description=(
            "Correct only: re-create an object whose drifted field is immutable (otherwise "
            "it is reported and left)."
        ),
    )

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not re.match(GO_DURATION, value) or duration_seconds(value) < MIN_INTERVAL_SECONDS:
            raise ValueError(f"must be a Go duration of at least 1s such as 10m, got {value!r}")
        return value
