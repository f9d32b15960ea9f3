"""Add the add-ons' story to a Stack's status: sections, conditions and row fields. Pure.

`enrich` takes the status `herd.status.build.stack_status` built for a finished pass, the
pass's result, and what `herd.addons.probe` observed (`herd.status.facts`: NeuVector
scans, agent health), and returns the status with `security` / `observability`, the
`SecurityScanned` / `ObservabilityConfigured` conditions, and each row's `securityScan` /
`observabilityMetrics`; for every Stack, the GPU facts (`herd.status.gpu`). A disabled
add-on's section, condition and row fields are removed. `carry_over` keeps the last known
add-on conditions and row fields on the status written while a rollout is running (the
probe runs only after a pass). `with_scans` is the security part of `enrich` for a pass
in flight: what a soak's security check read.

Callers: `herd.status.pipeline` (a pass's final status, once the probe has looked),
the e2e test bed, tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from herd.api.status import Condition, DeploymentRow, StackStatus
from herd.api.v1 import Toggle
from herd.plan.clusters import Cluster
from herd.plan.desired import StackPlan
from herd.plan.results import ReleaseResult, State
from herd.status.build import rfc3339
from herd.status.facts import (
    AGENT,
    AgentHealth,
    ClusterGpus,
    ClusterScan,
    FailOn,
    ReleaseGpus,
    RowKey,
)
from herd.status.gpu import GPU_ROW_FIELDS, with_gpus
from herd.status.observability import ObservabilitySummary, observability_summary, row_metrics
from herd.status.security import SecuritySummary, release_verdict, security_summary

SECURITY_SCANNED = "SecurityScanned"
OBSERVABILITY_CONFIGURED = "ObservabilityConfigured"
ADDON_CONDITIONS = (SECURITY_SCANNED, OBSERVABILITY_CONFIGURED)


class PassResult(Protocol):
    """The parts of `herd.engine.engine.StackResult` read here."""

    @property
    def plan(self) -> StackPlan | None: ...

    @property
    def targets(self) -> Sequence[Cluster]: ...

    @property
    def releases(self) -> Sequence[ReleaseResult]: ...


def enrich(
    status: StackStatus,
    result: PassResult,
    scans: Mapping[str, ClusterScan],
    agents: Mapping[str, AgentHealth],
    *,
    fail_on: FailOn = FailOn.CRITICAL,
    previous: StackStatus | None = None,
    now: datetime | None = None,
    gpus: Mapping[str, ClusterGpus] | None = None,
    release_gpus: Mapping[RowKey, ReleaseGpus] | None = None,
    insights: Mapping[str, tuple[int, int]] | None = None,
) -> StackStatus:
    """`status` with the add-on sections, conditions and row fields of this pass, and
    its GPU facts (`herd.status.gpu`) when `gpus` is given."""
    if result.plan is None:
        return status
    if gpus is not None:
        status = with_gpus(status, gpus, release_gpus or {})
    spec = result.plan.spec
    security = spec.security_toggle is Toggle.ENABLED
    observability = spec.observability is Toggle.ENABLED
    moment = now or datetime.now(UTC)
    targets = [c.id for c in result.targets]
    conditions = [c for c in status.conditions if c.type not in ADDON_CONDITIONS]
    before = {c.type: c for c in (previous.conditions if previous else ())}
    before.update({c.type: c for c in status.conditions if c.type in ADDON_CONDITIONS})
    update: dict[str, object] = {"security": None, "observability": None}

    if security:
        cluster_scans = [scans.get(c) or ClusterScan(cluster=c) for c in targets]
        summary = security_summary(cluster_scans)
        update["security"] = summary.status
        conditions.append(
            _condition(SECURITY_SCANNED, summary, status.observed_generation, moment, before)
        )
    agent_rows = {
        r.key.cluster: (r.state.value, r.message) for r in result.releases if r.chart == AGENT
    }
    if observability:
        obs = observability_summary(targets, agent_rows, agents, insights)
        update["observability"] = obs.status
        conditions.append(
            _condition(OBSERVABILITY_CONFIGURED, obs, status.observed_generation, moment, before)
        )
    update["conditions"] = conditions
    update["deployments"] = [
        _row(
            row,
            security=security,
            observability=observability,
            scans=scans,
            agents=agents,
            agent_rows=agent_rows,
            fail_on=fail_on,
        )
        for row in status.deployments
    ]
    return status.model_copy(update=update)


def with_scans(
    status: StackStatus,
    clusters: Sequence[str],
    scans: Mapping[str, ClusterScan],
    *,
    fail_on: FailOn,
    now: datetime,
) -> StackStatus:
    """`status` (a pass in flight) with `security`, the SecurityScanned condition and the
    `securityScan` of the rows of the clusters in `scans` as those scans say: what a
    soak's security check read (`herd.status.pipeline`, `Kind.CHECKS`), over the last
    probe's scans. The summary is of `clusters` (the pass's targets), as `enrich` makes it."""
    summary = security_summary([scans.get(c) or ClusterScan(cluster=c) for c in clusters])
    before = {c.type: c for c in status.conditions}
    condition = _condition(SECURITY_SCANNED, summary, status.observed_generation, now, before)
    rows = [
        row.model_copy(update={"security_scan": _scan_verdict(row, scans, fail_on)})
        if row.cluster_id in scans
        else row
        for row in status.deployments
    ]
    others = [c for c in status.conditions if c.type != SECURITY_SCANNED]
    return status.model_copy(
        update={"security": summary.status, "conditions": [*others, condition], "deployments": rows}
    )


def carry_over(status: StackStatus, previous: StackStatus | None) -> StackStatus:
    """`status` (built while a rollout runs) with the add-on conditions and row fields
    of `previous`, so an in-progress write does not blank what the last pass found."""
    if previous is None:
        return status
    kept = [c for c in previous.conditions if c.type in ADDON_CONDITIONS]
    known = {c.type for c in status.conditions}
    old_rows = {_key(r): r for r in previous.deployments}
    rows = []
    for fresh in status.deployments:
        row, old = fresh, old_rows.get(_key(fresh))
        blank = row.security_scan is None and row.observability_metrics is None
        if old is not None and blank:
            fields = ("security_scan", "observability_metrics")
            row = row.model_copy(update={f: getattr(old, f) for f in fields})
        if old is not None and row.gpu_requests is None:
            row = row.model_copy(update={f: getattr(old, f) for f in GPU_ROW_FIELDS})
        rows.append(row)
    return status.model_copy(
        update={
            "conditions": [*status.conditions, *(c for c in kept if c.type not in known)],
            "deployments": rows,
            "cluster_resources": status.cluster_resources or previous.cluster_resources,
            "cluster_resource_count": status.cluster_resource_count
            or previous.cluster_resource_count,
        }
    )


def _row(
    row: DeploymentRow,
    *,
    security: bool,
    observability: bool,
    scans: Mapping[str, ClusterScan],
    agents: Mapping[str, AgentHealth],
    agent_rows: Mapping[str, tuple[str, str]],
    fail_on: FailOn,
) -> DeploymentRow:
    security_scan = observability_metrics = None
    if security:
        security_scan = _scan_verdict(row, scans, fail_on)
    if observability:
        deployed = agent_rows.get(row.cluster_id, ("", ""))[0] == State.DEPLOYED.value
        observability_metrics = row_metrics(deployed, agents.get(row.cluster_id)).value
    return row.model_copy(
        update={"security_scan": security_scan, "observability_metrics": observability_metrics}
    )


def _scan_verdict(row: DeploymentRow, scans: Mapping[str, ClusterScan], fail_on: FailOn) -> str:
    scan = scans.get(row.cluster_id) or ClusterScan(cluster=row.cluster_id)
    images = scan.releases.get((row.namespace, row.release_name))
    deployed = row.status == State.DEPLOYED.value
    return release_verdict(images if deployed else None, scan, fail_on).value


def _key(row: DeploymentRow) -> tuple[str, str, str]:
    return (row.cluster_id, row.namespace, row.release_name)


def _condition(
    kind: str,
    summary: SecuritySummary | ObservabilitySummary,
    generation: int | None,
    now: datetime,
    before: Mapping[str, Condition],
) -> Condition:
    old = before.get(kind)
    kept = old is not None and old.status == summary.condition
    return Condition(
        type=kind,
        status=summary.condition,
        reason=summary.reason,
        message=summary.message,
        last_transition_time=(old.last_transition_time if old and kept else None) or rfc3339(now),
        observed_generation=generation,
    )
