"""Herd's error taxonomy, shared by the engine, the operator and the CLI.

Three kinds, mapped once by each face (`herd.operator` to kopf's Permanent/Temporary
errors, `herd.cli` to exit codes):

- `SpecError`: the Stack itself is wrong. Found before any helm call; retrying cannot help.
- `TransientError`: the world is not ready (API server down, repo unreachable); retry later.
- Per-release failures are not exceptions at all: the rollout records them per release
  (see `herd.rollout`) so one bad chart never stops the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a Stack, located by its field path (`spec.charts[1].repo`)."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class HerdError(Exception):
    """Base of every error Herd raises on purpose."""


class SpecError(HerdError):
    """The Stack is invalid; every problem found is listed, each naming its field."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid Stack")


class TransientError(HerdError):
    """Something outside the Stack failed; the same work may succeed after `delay` seconds."""

    def __init__(self, message: str, *, delay: float = 30.0) -> None:
        self.delay = delay
        super().__init__(message)
