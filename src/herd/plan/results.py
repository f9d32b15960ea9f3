"""Where each release stands after (or during) a rollout. Pure data.

Produced by `herd.rollout`, read by `herd.status.build` (the Stack's status), the operator's
Events and metrics, and the CLI's tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

from herd.plan.decide import Action
from herd.plan.drift import ReleaseDrift
from herd.plan.releases import ReleaseKey


class State(enum.StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    DEPLOYED = "Deployed"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    UNINSTALLING = "Uninstalling"
    UNINSTALLED = "Uninstalled"
    UNREACHABLE = "Unreachable"
    NOT_GRANTED = "NotGranted"  # the Stack's grants do not cover the cluster: left untouched
    PLANNED = "Planned"  # spec.mode DryRun: what Apply would do is the result's action


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReleaseResult:
    """Where one release stands; replaced (not mutated) on every change."""

    key: ReleaseKey
    chart: str  # the chart's name in the Stack
    state: State
    action: Action | None = None
    revision: int | None = None
    chart_version: str | None = None
    message: str = ""
    transient: bool = False
    started: datetime | None = None
    finished: datetime | None = None
    updated: datetime = field(default_factory=now)
    config: str | None = None  # the desired config digest acted on (None: no desired release)
    held: bool = False  # not retried: this config failed permanently before (C3)
    drift: ReleaseDrift | None = None  # its last drift check (`herd.rollout.drift`)
    manifest: str | None = None  # Herd's write: the digest of the manifest helm returned
