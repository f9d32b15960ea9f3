"""Templated values (`values.templated: true`): a cluster's facts substituted into strings.

Pure, and deliberately tiny: the only construct is `{{ PATH }}`, where PATH is one of

- `.Cluster.id` (the Rancher cluster ID),
- `.Cluster.name`,
- `.Cluster.labels.KEY` (everything after `labels.` is the label key, so prefixed keys such
  as `.Cluster.labels.topology.kubernetes.io/region` work).

No functions, pipelines, conditionals or code: a string is split into literal text and
variables, and each variable is looked up in the cluster's facts. Only string values are
templated (map keys, numbers and booleans are left alone); a rendered value stays a string.

Two kinds of error, found at different times:

- `check_values` finds malformed templates (an unclosed `{{`, anything but a PATH inside)
  for the whole Stack before any cluster is contacted: spec errors (`herd.plan`).
- `render_values` raises `UnknownVariable` when a cluster lacks a fact (a label it does not
  have): that cluster's releases fail, naming the value path and the variable; other
  clusters go on (`herd.clustervalues`).

Callers: `herd.clustervalues`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from herd.clusters.model import Cluster

OPEN, CLOSE = "{{", "}}"
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"^\s*\.Cluster\.(id|name|labels\.([A-Za-z0-9][-A-Za-z0-9_./]*))\s*$")
SYNTAX = (
    "use {{ .Cluster.id }}, {{ .Cluster.name }} or {{ .Cluster.labels.KEY }} "
    "(no functions or pipelines)"
)


class TemplateError(ValueError):
    """A malformed template: a spec error."""


@dataclass(frozen=True)
class UnknownVariable(Exception):
    """The cluster has no such fact. `path` is the value's dotted path, `variable` the
    template's variable (e.g. `.Cluster.labels.region`)."""

    path: str
    variable: str


def facts(cluster: Cluster) -> dict[str, str]:
    """The variables a cluster offers, by their name after `.Cluster.`."""
    found = {"id": cluster.id, "name": cluster.name}
    found.update({f"labels.{key}": value for key, value in cluster.labels.items()})
    return found


def variables(text: str) -> list[str]:
    """The variables of `text` (after `.Cluster.`), in order; raises `TemplateError`."""
    names = []
    for match in _EXPRESSION.finditer(text):
        path = _PATH.match(match.group(1))
        if path is None:
            raise TemplateError(f"{match.group(0)!r} is not a cluster fact: {SYNTAX}")
        names.append(path.group(1))
    rest = _EXPRESSION.sub("", text)
    if OPEN in rest:
        raise TemplateError(f"{OPEN!r} is not closed by {CLOSE!r}: {SYNTAX}")
    return names


def render(text: str, known: Mapping[str, str], path: str = "") -> str:
    """`text` with every variable replaced by the fact; raises `TemplateError` or
    `UnknownVariable`. A string without `{{` comes back unchanged."""
    if OPEN not in text:
        return text
    variables(text)  # the whole string is well formed before anything is replaced

    def substitute(match: re.Match[str]) -> str:
        name = _PATH.match(match.group(1))
        assert name is not None  # checked above
        if name.group(1) not in known:
            raise UnknownVariable(path, f".Cluster.{name.group(1)}")
        return known[name.group(1)]

    return _EXPRESSION.sub(substitute, text)


def check_values(values: Any, path: str) -> list[tuple[str, str]]:
    """(value path, problem) for every malformed template in a values tree."""
    problems = []
    for where, text in _strings(values, path):
        try:
            variables(text)
        except TemplateError as error:
            problems.append((where, str(error)))
    return problems


def render_values(values: Any, known: Mapping[str, str], path: str) -> Any:
    """A copy of a values tree with every string rendered; raises `UnknownVariable`
    naming the first value whose variable the cluster lacks."""
    if isinstance(values, str):
        return render(values, known, path)
    if isinstance(values, Mapping):
        return {k: render_values(v, known, _join(path, k)) for k, v in values.items()}
    if isinstance(values, list):
        return [render_values(v, known, f"{path}[{i}]") for i, v in enumerate(values)]
    return values


def _strings(values: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(values, str):
        return [(path, values)]
    if isinstance(values, Mapping):
        return [s for k, v in values.items() for s in _strings(v, _join(path, k))]
    if isinstance(values, list):
        return [s for i, v in enumerate(values) for s in _strings(v, f"{path}[{i}]")]
    return []


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
