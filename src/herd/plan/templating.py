"""Templated values (`values.templated: true`): a cluster's facts substituted into strings.

Pure, and deliberately tiny: the only construct is `{{ PATH }}`, where PATH is one of

- `.Cluster.id` (the Rancher cluster ID),
- `.Cluster.name`,
- `.Cluster.labels.KEY` (everything after `labels.` is the label key, so prefixed keys such
  as `.Cluster.labels.topology.kubernetes.io/region` work).

No functions, pipelines, conditionals or code: a string is split into literal text and
variables, and each variable is looked up in the cluster's facts. Only string values are
templated (map keys, numbers and booleans are left alone); a rendered value stays a string.

The scan is linear (`str.find`, no backtracking regular expression over the whole string),
and a string holding `{{` may be at most `MAX_CHARS` long (a spec error naming the value):
tenant strings cost bounded time wherever the engine templates them.

Two kinds of error, found at different times:

- `check_values` finds malformed templates (an unclosed `{{`, anything but a PATH inside)
  for the whole Stack before any cluster is contacted: spec errors (`herd.plan.desired`).
- `render_values` raises `UnknownVariable` when a cluster lacks a fact (a label it does not
  have): that cluster's releases fail, naming the value path and the variable; other
  clusters go on (`herd.plan.values`).

Callers: `herd.plan.values`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from herd.errors import PermanentError
from herd.plan.clusters import Cluster

OPEN, CLOSE = "{{", "}}"
MAX_CHARS = 16 * 1024  # a templated string longer than this is a spec error
_PATH = re.compile(r"^\s*\.Cluster\.(id|name|labels\.([A-Za-z0-9][-A-Za-z0-9_./]*))\s*$")
SYNTAX = (
    "use {{ .Cluster.id }}, {{ .Cluster.name }} or {{ .Cluster.labels.KEY }} "
    "(no functions or pipelines)"
)


class TemplateError(PermanentError, ValueError):
    """A malformed template: a spec error."""


@dataclass(frozen=True)
class UnknownVariable(PermanentError):
    """The cluster has no such fact. `path` is the value's dotted path, `variable` the
    template's variable (e.g. `.Cluster.labels.region`)."""

    path: str
    variable: str


def facts(cluster: Cluster) -> dict[str, str]:
    """The variables a cluster offers, by their name after `.Cluster.`."""
    found = {"id": cluster.id, "name": cluster.name}
    found.update({f"labels.{key}": value for key, value in cluster.labels.items()})
    return found


def expressions(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, inner text) of every `{{ … }}` in `text`, left to right.

    The same matches as the regular expression `\\{\\{(.*?)\\}\\}` (each `{{` closed by the
    first `}}` after it), found with `str.find` in linear time: that lazy expression is
    quadratic on a long string of unclosed `{{`.
    """
    start = text.find(OPEN)
    while start >= 0:
        end = text.find(CLOSE, start + len(OPEN))
        if end < 0:
            return  # no `}}` after this `{{`, so none after any later one either
        yield start, end + len(CLOSE), text[start + len(OPEN) : end]
        start = text.find(OPEN, end + len(CLOSE))


def variables(text: str) -> list[str]:
    """The variables of `text` (after `.Cluster.`), in order; raises `TemplateError`."""
    if OPEN not in text:
        return []
    if len(text) > MAX_CHARS:
        raise TemplateError(
            f"a templated string may hold at most {MAX_CHARS} characters, this one has {len(text)}"
        )
    names, rest, done = [], [], 0
    for start, end, inner in expressions(text):
        path = _PATH.match(inner)
        if path is None:
            raise TemplateError(f"{_shown(text[start:end])} is not a cluster fact: {SYNTAX}")
        names.append(path.group(1))
        rest.append(text[done:start])
        done = end
    rest.append(text[done:])
    if OPEN in "".join(rest):
        raise TemplateError(f"{OPEN!r} is not closed by {CLOSE!r}: {SYNTAX}")
    return names


def render(text: str, known: Mapping[str, str], path: str = "") -> str:
    """`text` with every variable replaced by the fact; raises `TemplateError` or
    `UnknownVariable`. A string without `{{` comes back unchanged."""
    if OPEN not in text:
        return text
    variables(text)  # the whole string is well formed before anything is replaced
    parts, done = [], 0
    for start, end, inner in expressions(text):
        name = _PATH.match(inner)
        assert name is not None  # checked above
        if name.group(1) not in known:
            raise UnknownVariable(path, f".Cluster.{name.group(1)}")
        parts += [text[done:start], known[name.group(1)]]
        done = end
    parts.append(text[done:])
    return "".join(parts)


def _shown(expression: str) -> str:
    """An expression for an error message: the start of a long one is enough."""
    return repr(expression if len(expression) <= 80 else f"{expression[:60]}…{expression[-10:]}")


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
