"""Events on a Stack: one per change a user should see, never the same one twice in a row.

`StackEvents` wraps the poster the kopf daemon gives (`herd.operator.handlers`) and drops
an Event whose reason and message were already posted for the Stack within the window
(the resync interval), so a resync that finds the same failure adds nothing. `log_release`
turns a release's progress into a log line and, for changes, an Event naming cluster and
chart; `log_drift` does the same for a drift check (`DriftDetected`, `DriftCorrected`);
`log_placement` posts `PlacementChanged` when `targets.placement` moves the Stack.
Callers: `herd.operator.keeper` and `herd.operator.teardown`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from herd.plan.decide import Action
from herd.plan.placement import PlacementDecision
from herd.plan.results import ReleaseResult, State
from herd.status.gpu import FIT_WARNING

Logger = logging.Logger | logging.LoggerAdapter[Any]


class Events(Protocol):
    """Posts Events on the Stack (kopf's daemon loggers do not post their lines)."""

    def normal(self, reason: str, message: str) -> None: ...

    def warning(self, reason: str, message: str) -> None: ...


class StackEvents:
    """`Events`, de-duplicated: the same reason and message at most once per window."""

    def __init__(self, events: Events | None, window: float) -> None:
        self._events = events
        self._window = window
        self._posted: dict[tuple[str, str, str], float] = {}

    def normal(self, reason: str, message: str) -> None:
        if self._events is not None and self._fresh("Normal", reason, message):
            self._events.normal(reason, message)

    def warning(self, reason: str, message: str) -> None:
        if self._events is not None and self._fresh("Warning", reason, message):
            self._events.warning(reason, message)

    def _fresh(self, kind: str, reason: str, message: str) -> bool:
        now = time.monotonic()
        for old in [k for k, at in self._posted.items() if now - at >= self._window]:
            del self._posted[old]
        key = (kind, reason, message)
        if key in self._posted:
            return False
        self._posted[key] = now
        return True


_VERBS = {Action.INSTALL: "Installed", Action.UPGRADE: "Upgraded", Action.RECOVER: "Recovered"}


def log_release(result: ReleaseResult, logger: Logger, events: Events | None) -> None:
    """Log a release's change and post it as an Event naming cluster and chart.

    Without `events` (kopf handlers, whose loggers post INFO+ lines themselves), the log
    line is the Event. A held failure (not retried) was reported when it happened.
    """
    if result.held:
        return
    release = f"{result.key.namespace}/{result.key.name}"
    where = f"chart {result.chart} (release {release}) on cluster {result.key.cluster}"
    if result.state is State.DEPLOYED and result.action in _VERBS and result.started:
        verb = _VERBS[result.action]
        message = f"{verb} {where}, revision {result.revision}"
        logger.info("%s", message)
        if events is not None:
            events.normal(verb, message)
    elif result.state is State.UNINSTALLED:
        logger.info("Uninstalled %s", where)
        if events is not None:
            events.normal("Uninstalled", f"Uninstalled {where}")
    elif result.state is State.DEPLOYING and result.message.startswith(FIT_WARNING):
        message = f"{where}: {result.message}"
        logger.warning("%s", message)
        if events is not None:
            events.warning("GpuFit", message)
    elif result.state in (State.FAILED, State.UNREACHABLE):
        message = f"{result.state.value} {where}: {result.message}"
        logger.warning("%s", message)
        if events is not None:
            events.warning("Release" + result.state.value, message)


def log_drift(result: ReleaseResult, logger: Logger, events: Events | None) -> None:
    """`DriftDetected` (a warning) and `DriftCorrected` Events of a release's drift check;
    repeated ones are dropped by `StackEvents`' window."""
    drift = result.drift
    if drift is None:
        return
    where = (
        f"chart {result.chart} (release {result.key.namespace}/{result.key.name}) "
        f"on cluster {result.key.cluster}"
    )
    if drift.corrected:
        message = f"Corrected {drift.corrected} drifted objects of {where}"
        logger.info("%s", message)
        if events is not None:
            events.normal("DriftCorrected", message)
    if drift.count:
        message = f"{drift.count} objects drifted in {where}: {'; '.join(drift.entries(3))}"
        logger.warning("%s", message)
        if events is not None:
            events.warning("DriftDetected", message)


def log_placement(
    before: Sequence[str],
    decision: PlacementDecision | None,
    logger: Logger,
    events: Events | None,
) -> None:
    """`PlacementChanged` when the clusters `targets.placement` picks differ from those it
    picked last time (`before`; none: the first pick is no move): from, to, and why."""
    if decision is None or not before or list(before) == list(decision.picked):
        return
    to = ", ".join(decision.picked) or "no cluster"
    message = f"targets.placement moves the Stack from {', '.join(before)} to {to}: "
    message += decision.reason
    if decision.leaving:
        message += f"; {', '.join(decision.leaving)} keeps its releases until they are Deployed"
    logger.info("%s", message)
    if events is not None:
        events.normal("PlacementChanged", message)
