"""Read Stack documents from YAML files and directories (for the CLI and `herd validate`).

Every problem is collected with the file and document it came from, so one run of
`herd validate -f examples/` lists everything that is wrong. ClusterGrant documents (a
cluster admin's, e.g. `examples/grant-default.yaml`) are checked against their schema too:
an invalid one is listed with its problems, a valid one is no Stack and is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from herd.api import Stack, parse_stack
from herd.api.grants import GRANT_KIND, parse_grant
from herd.errors import Problem, SpecError
from herd.plan import yamlsafe
from herd.plan.graph import ChartGraph
from herd.plan.values import spec_problems as template_problems


@dataclass
class Document:
    """One YAML document of a file: a parsed Stack, or the problems that stopped it."""

    source: str
    stack: Stack | None = None
    graph: ChartGraph | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def label(self) -> str:
        name = self.stack.name if self.stack else ""
        return f"{self.source} (stack {name})" if name else self.source


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
    return [path]


def _raw_documents(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        text = path.read_text()
    except OSError as error:
        yield str(path), error
        return
    try:
        docs = [d for d in yamlsafe.load_all(text) if d is not None]
    except yaml.YAMLError as error:
        yield str(path), error
        return
    for index, doc in enumerate(docs):
        yield (f"{path}#{index + 1}" if len(docs) > 1 else str(path)), doc


def check_document(source: str, raw: Any) -> Document:
    """Schema and graph checks of one document; nothing touches a cluster."""
    document = Document(source)
    if isinstance(raw, Exception):
        document.problems.append(Problem("(file)", f"cannot read: {raw}"))
        return document
    if not isinstance(raw, dict):
        document.problems.append(Problem("(document)", "must be a YAML object (a Stack)"))
        return document
    try:
        document.stack = parse_stack(raw)
        document.graph = ChartGraph(document.stack.spec.charts)
        document.problems.extend(template_problems(document.stack.spec))
    except SpecError as error:
        document.problems.extend(error.problems)
    return document


def _grant_problems(raw: Any) -> list[Problem] | None:
    """None when `raw` is no ClusterGrant; else its schema problems ([] when valid)."""
    if not isinstance(raw, dict) or raw.get("kind") != GRANT_KIND:
        return None
    try:
        parse_grant(raw)
    except SpecError as error:
        return list(error.problems)
    return []


def load(paths: list[Path]) -> list[Document]:
    """Every Stack document of every file (directories are walked for *.yaml / *.yml).

    Valid ClusterGrant documents are left out; invalid ones come back with their problems.
    """
    documents: list[Document] = []
    for path in paths:
        for file in _files(path):
            for source, raw in _raw_documents(file):
                grant_problems = _grant_problems(raw)
                if grant_problems is None:
                    documents.append(check_document(source, raw))
                elif grant_problems:
                    documents.append(Document(source, problems=grant_problems))
    return documents
