"""The rollout: carry out a Stack's plan on its clusters, concurrently and fault-contained.

- `herd.rollout.gates`: what every rollout of a process shares (`Gates`, `Limits`).
- `herd.rollout.scheduler`: `Rollout`, one pass of one Stack (clusters supervised, each
  release started as soon as its own dependencies are deployed).
- `herd.rollout.actions`: one release's steps (fresh observation under its lock, decide,
  helm).
- `herd.rollout.staged`: a pass in the stages of `spec.rollout` (or none: suspend), as
  `herd.stages` decides; `herd.rollout.admission`: a stage's bound and failure budget.

Callers: `herd.engine` (and the operator for `Gates.drain`/`idle`).
"""

from herd.rollout.actions import Settings
from herd.rollout.gates import DEFAULT_LIMITS, DRAINING_MESSAGE, Gates, Limits
from herd.rollout.scheduler import BACKOFF_MESSAGE, Progress, Rollout, Target

__all__ = [
    "BACKOFF_MESSAGE",
    "DEFAULT_LIMITS",
    "DRAINING_MESSAGE",
    "Gates",
    "Limits",
    "Progress",
    "Rollout",
    "Settings",
    "Target",
]
