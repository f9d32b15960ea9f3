"""Herd's error taxonomy: one root, three branches, and one way to say what happened.

Every error class of `herd` derives from one branch of `HerdError` (`tests/test_errors.py`
checks it, and lists the few still to move):

- `PermanentError`: retrying the same thing cannot help; it waits for a change (the spec,
  a Secret, a grant, the configuration). `SpecError` is the Stack's own: found before any
  helm call, each problem naming its field.
- `TransientError`: the world is not ready (API server down, repo unreachable, the process
  draining); the same work may succeed after `delay` seconds.
- `ReleaseError`: one release failed (helm's `HelmFailure`, a render check). The rollout
  records it in that release's row (see `herd.rollout`), so one bad chart never stops the
  others; its `transient` says whether the next pass retries it.

`describe` turns any exception into the one line a row, a skipped cluster or the Stack's
status says: every catch-all goes through it. Each face maps the branches once
(`herd.operator` to kopf's Permanent/Temporary errors, `herd.cli` to exit codes).

Callers: every layer (this module imports nothing of Herd).
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
    """Root of every error Herd raises on purpose; its text is written for users."""


class PermanentError(HerdError):
    """Retrying cannot help until something changes (spec, Secret, grant, configuration)."""


class SpecError(PermanentError):
    """The Stack is invalid; every problem found is listed, each naming its field."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid Stack")


class TransientError(HerdError):
    """Something outside the Stack failed; the same work may succeed after `delay` seconds."""

    def __init__(self, message: str, *, delay: float = 30.0) -> None:
        self.delay = delay
        super().__init__(message)


class ReleaseError(HerdError):
    """One release failed: recorded in its row, never its siblings' failure. `transient`:
    the next pass tries it again (else it waits for a new config)."""

    transient: bool = False


def describe(error: BaseException, *, cluster: str | None = None, doing: str = "") -> str:
    """The one line a row, a skipped cluster or the Stack's status says about `error`.

    Herd's own errors say what happened in their own words (written for users, never
    holding a secret). Anything else is a bug or an unforeseen answer, whose text may
    quote a kubeconfig, a token or a Secret: only its type is named (and an API error's
    status and reason), where it happened: `doing` ("getting its kubeconfig"), else
    "on cluster <cluster>".
    """
    if isinstance(error, HerdError):
        return str(error) or type(error).__name__  # bounded where it was made
    what = type(error).__name__
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if status and reason:
        what = f"{what} {status} {reason}"
    where = f" {doing}" if doing else f" on cluster {cluster}" if cluster else ""
    return f"unexpected {what}{where}"
