"""The SUSE Observability agent across a Stack's clusters → `status.observability`. Pure.

An agent counts as *deployed* on a cluster when its release row there is Deployed (from
the rollout result), and as *ready* when every workload its manifest creates is ready
(`herd.addons.probe` reads them: Deployments Available, DaemonSets and StatefulSets with
all replicas ready). `metricsCollected` is true when the agent is ready on every target
cluster. `dashboardsAvailable` and `alertsConfigured` count Herd's dashboard ConfigMaps and
alert rules read back from the target clusters (`herd.addons.insights`).
Rows get `observabilityMetrics`: Active (agent ready in the row's cluster),
NotReady (deployed, workloads not ready), Pending (not deployed yet, or not known).

Callers: `herd.status.addons`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from herd.api.status import ObservabilityStatus
from herd.status.facts import AgentHealth


class Metrics(enum.StrEnum):
    ACTIVE = "Active"
    NOT_READY = "NotReady"
    PENDING = "Pending"


@dataclass(frozen=True)
class ObservabilitySummary:
    status: ObservabilityStatus
    condition: Literal["True", "False"]
    reason: str
    message: str


def row_metrics(deployed: bool, health: AgentHealth | None) -> Metrics:
    if not deployed:
        return Metrics.PENDING
    if health is None:
        return Metrics.PENDING
    return Metrics.ACTIVE if health.ready else Metrics.NOT_READY


def observability_summary(
    targets: Sequence[str],
    agent_rows: Mapping[str, tuple[str, str]],
    agents: Mapping[str, AgentHealth],
    insights: Mapping[str, tuple[int, int]] | None = None,
) -> ObservabilitySummary:
    """`agent_rows`: cluster → (row state, message) of the agent release there;
    `insights`: cluster → (dashboards, alert rules) of Herd's found there."""
    deployed = [c for c in targets if agent_rows.get(c, ("", ""))[0] == "Deployed"]
    ready = [c for c in deployed if c in agents and agents[c].ready]
    status = ObservabilityStatus(
        suse_observability_enabled=True,
        agents_deployed=len(deployed),
        agents_total=len(targets),
        metrics_collected=bool(targets) and len(ready) == len(targets),
        dashboards_available=sum(d for c, (d, _) in (insights or {}).items() if c in targets),
        alerts_configured=sum(a for c, (_, a) in (insights or {}).items() if c in targets),
    )
    if not targets:
        return ObservabilitySummary(status, "False", "NoTargets", "No target cluster")
    where = f"on {len(deployed)} of {len(targets)} clusters"
    if len(ready) == len(targets):
        return ObservabilitySummary(status, "True", "AgentsReady", f"Agent ready {where}")
    missing = [c for c in targets if c not in deployed]
    if missing:
        first = missing[0]
        state, message = agent_rows.get(first, ("NotPlanned", ""))
        busy = state in ("Pending", "Deploying")
        detail = f"{first}: {state.lower() or 'unknown'}" + (f" ({message})" if message else "")
        return ObservabilitySummary(
            status,
            "False",
            "AgentsDeploying" if busy else "AgentsNotDeployed",
            f"Agent deployed {where}; first missing {detail}",
        )
    unready = [c for c in deployed if c not in ready]
    first = unready[0]
    detail = agents[first].detail if first in agents else "not checked yet"
    return ObservabilitySummary(
        status,
        "False",
        "AgentsNotReady",
        f"Agent deployed {where}, not ready on {len(unready)}; first {first}: {detail}",
    )
