"""Turn a Stack body (from the API server or a YAML file) into a typed `Stack`.

Pydantic's errors are rewritten into `Problem`s that name the field the way a user
writes it (`spec.charts[1].repo`) and say what is expected in plain words. Used by the
operator handlers, the CLI and `herd validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from herd.api.common import DATA_KEY, DNS1123_LABEL, DNS1123_SUBDOMAIN, GO_DURATION, REPO_URL
from herd.api.v1 import API_VERSION, Stack, StackSpec
from herd.errors import Problem, SpecError

_PATTERN_MEANING = {
    REPO_URL: "must be an https://, http:// or oci:// URL",
    GO_DURATION: "must be a Go duration such as 90s, 5m or 1h30m",
    DNS1123_LABEL: "must be a DNS-1123 label (lowercase letters, digits and '-')",
    DNS1123_SUBDOMAIN: "must be an object name (lowercase letters, digits, '-' and '.')",
    DATA_KEY: "must be a ConfigMap/Secret key (letters, digits, '-', '_' and '.')",
}


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """`('spec', 'charts', 1, 'repo')` → `spec.charts[1].repo`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(document)"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        meaning = _PATTERN_MEANING.get(pattern, f"must match {pattern}")
        return f"{meaning}, got {error['input']!r}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    if kind == "literal_error" and error["loc"] == ("apiVersion",):
        return f"must be {API_VERSION}, got {error['input']!r}"
    # Validators raise "Value error, ..."; the prefix is noise to a user.
    return error["msg"].removeprefix("Value error, ")


def problems_of(error: ValidationError, prefix: str = "") -> list[Problem]:
    """Every problem pydantic found, located and worded for users."""
    # Tagged validators add the function name to the location; drop such parts.
    return [
        Problem(
            field_path(tuple(p for p in e["loc"] if not str(p).startswith("function-")), prefix),
            _message(e),
        )
        for e in error.errors()
    ]


def parse_stack(body: Mapping[str, Any]) -> Stack:
    """A whole Stack document; raises `SpecError` listing every schema problem."""
    try:
        return Stack.model_validate(dict(body))
    except ValidationError as error:
        raise SpecError(problems_of(error)) from None


def parse_spec(spec: Mapping[str, Any]) -> StackSpec:
    """Just the spec (what kopf hands a handler); field paths start at `spec`."""
    try:
        return StackSpec.model_validate(dict(spec))
    except ValidationError as error:
        raise SpecError(problems_of(error, prefix="spec")) from None
