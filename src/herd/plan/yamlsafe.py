"""Bounded YAML parsing for tenant-supplied bytes (charts, rendered manifests, values). Pure.

PyYAML's `safe_load` builds an alias as a shared reference, so a 606-byte "billion laughs"
document parses quickly but is exponentially large as soon as anything walks it (`str()`,
`json.dumps`, a recursive check). `load_all` and `load` compose with `SafeLoader`, counting
every node as it would be once aliases are expanded, and refuse, with `YamlLimitError`:

- input longer than `Limits.bytes` (checked before parsing starts);
- more than `Limits.documents` documents;
- more than `Limits.nodes` nodes, aliases counted at their expanded size;
- nesting deeper than `Limits.depth` (deep nesting would hit Python's recursion limit).

Legitimate anchors and aliases (common in `values.yaml`) still work within those bounds.
Cost is linear in the input size: a node is composed once, an alias adds a number.
Events come from libyaml when PyYAML has it (the composer stays Python, to count).

Callers: `herd.plan.tenancy` (the render check's manifest), `herd.helm.chart_crds` (crds/,
Chart.yaml,
values.yaml of a chart), `herd.addons.images`, `herd.kube.values_from` and `herd.cli.documents`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from herd.errors import PermanentError

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """How much one call may parse."""

    bytes: int = 32 * MIB  # a big chart's manifest (CRDs included) is a few MB
    documents: int = 10_000
    nodes: int = 2_000_000  # expanded: aliases count at the size of what they point to
    depth: int = 200


DEFAULT_LIMITS = Limits()


class YamlLimitError(PermanentError, yaml.YAMLError):
    """The input exceeds a `Limits` bound; the message says which, and where."""


try:  # libyaml's parser, with PyYAML's (Python) composer on top: 6x the pure-Python speed
    from yaml._yaml import CParser as _Parser

    class _Base(Composer, _Parser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

except ImportError:  # PyYAML without libyaml: the pure-Python loader
    _Base = yaml.SafeLoader  # type: ignore[assignment,misc]


class _BoundedLoader(_Base):
    """A safe loader whose composer counts expanded nodes and depth (the composer is
    PyYAML's Python one, whatever parses the events), and whose documents are counted by
    `load_all`."""

    def __init__(self, stream: str, limits: Limits) -> None:
        super().__init__(stream)
        self._limits = limits
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[str, int] = {}  # anchor -> expanded size of its node

    def compose_document(self) -> Any:
        self._sizes = {}  # anchors are per document
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count(self._sizes.get(str(event.anchor), 1), event)
            return super().compose_node(parent, index)
        self._count(1, event)
        self._depth += 1
        if self._depth > self._limits.depth:
            raise YamlLimitError(f"nested deeper than {self._limits.depth} levels{_where(event)}")
        before = self._nodes
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._sizes[str(anchor)] = self._nodes - before + 1
        return node

    def _count(self, size: int, event: Any) -> None:
        self._nodes += size
        if self._nodes > self._limits.nodes:
            raise YamlLimitError(
                f"more than {self._limits.nodes} nodes once aliases are expanded{_where(event)}"
            )


def _where(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


def _check_size(text: str | bytes, limits: Limits) -> str:
    if len(text) > limits.bytes:
        raise YamlLimitError(f"{len(text)} bytes, more than the {limits.bytes} allowed")
    return text.decode() if isinstance(text, bytes) else text


def load_all(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Iterator[Any]:
    """The documents of `text`, like `yaml.safe_load_all`, within `limits`.

    Raises `YamlLimitError` (a `yaml.YAMLError`) past a bound, `yaml.YAMLError` on bad
    syntax and `UnicodeDecodeError` on bytes that are not UTF-8.
    """
    loader = _BoundedLoader(_check_size(text, limits), limits)
    try:
        documents = 0
        while loader.check_data():  # type: ignore[no-untyped-call]
            documents += 1
            if documents > limits.documents:
                raise YamlLimitError(f"more than {limits.documents} YAML documents")
            yield loader.get_data()
    finally:
        loader.dispose()


def load(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """One document, like `yaml.safe_load` (None for an empty input), within `limits`."""
    loader = _BoundedLoader(_check_size(text, limits), limits)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
