"""Readiness of a Rancher provisioning Cluster: its conditions, not only `status.ready`.

Rancher never sets `status.ready` back to false (pkg/controllers/provisioningv2/cluster), so a
cluster whose agent disconnected still says ready; its `Ready` and `Connected` conditions
say otherwise. A table of bodies as Rancher writes them.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import Targets
from herd.clusters.objects import rancher_cluster, rancher_not_ready
from herd.plan.targets import resolve_targets
from herd.settings import Settings


def body(ready: bool | None = True, *conditions: dict[str, str], **metadata: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"clusterName": "c-m-1", "conditions": list(conditions)}
    if ready is not None:
        status["ready"] = ready
    metadata = {"name": "edge", "namespace": "fleet-default", **metadata}
    return {"metadata": metadata, "status": status}


def cond(kind: str, status: str, message: str = "", reason: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "message": message, "reason": reason}


@pytest.mark.parametrize(
    ("cluster", "why"),
    [
        (body(True), ""),
        (body(True, cond("Ready", "True"), cond("Connected", "True")), ""),
        (body(True, cond("Ready", "Unknown")), ""),  # not yet known: status.ready decides
        (body(True, cond("Provisioned", "False")), ""),  # not a readiness condition
        (
            body(True, cond("Ready", "True"), cond("Connected", "False")),
            "condition Connected is False",
        ),
        (
            body(True, cond("Connected", "False", reason="Disconnected")),
            "condition Connected is False: Disconnected",
        ),
        (
            body(True, cond("Ready", "False", "[Disconnected] Cluster agent is not connected")),
            "condition Ready is False: [Disconnected] Cluster agent is not connected",
        ),
        (body(False), "not connected to Rancher yet (status.ready is not true)"),
        (body(None), "not connected to Rancher yet (status.ready is not true)"),
        (body(True, deletionTimestamp="2026-01-01T00:00:00Z"), "being deleted"),
    ],
)
def test_not_ready_reason(cluster: dict[str, Any], why: str) -> None:
    assert rancher_not_ready(cluster) == why
    listed = rancher_cluster(cluster)
    assert (listed.ready, listed.not_ready) == (not why, why)


def test_a_disconnected_agent_shows_on_the_management_cluster() -> None:
    """An imported cluster's provisioning Cluster keeps `ready: true` and its own conditions
    (Reconciling, Stalled, Created) when the agent drops; the management Cluster says so."""
    provisioning = body(True, cond("Reconciling", "False"), cond("Created", "True"))
    connected = {"status": {"conditions": [cond("Connected", "True"), cond("Ready", "True")]}}
    dropped = {
        "status": {
            "conditions": [
                cond("Connected", "False"),
                cond("Ready", "False", "Cluster agent is not connected", "Disconnected"),
            ]
        }
    }
    assert rancher_not_ready(provisioning) == ""
    assert rancher_not_ready(provisioning, connected) == ""
    why = "condition Connected is False; condition Ready is False: Cluster agent is not connected"
    assert rancher_not_ready(provisioning, dropped) == why
    cluster = rancher_cluster(provisioning, dropped)
    assert (cluster.ready, cluster.not_ready) == (False, why)


def test_long_condition_message_is_capped() -> None:
    why = rancher_not_ready(body(True, cond("Connected", "False", "x" * 5000)))
    assert why.startswith("condition Connected is False: x") and len(why) < 300


def test_a_cluster_without_a_management_id_is_not_ready() -> None:
    cluster = rancher_cluster({"metadata": {"name": "new"}, "status": {"ready": True}})
    assert (cluster.id, cluster.ready) == ("new", False)


def test_the_skipped_row_says_why() -> None:
    disconnected = rancher_cluster(
        body(True, cond("Connected", "False", "agent tunnel closed"), labels={"env": "edge"})
    )
    targets = Targets.model_validate({"selector": {"matchLabels": {"env": "edge"}}})

    resolution = resolve_targets(targets, [disconnected])

    assert resolution.cluster_ids == []
    assert [(row.cluster_id, row.reason) for row in resolution.skipped] == [
        ("c-m-1", "cluster edge is not ready: condition Connected is False: agent tunnel closed")
    ]


def test_both_fleet_workspaces_are_watched_by_default() -> None:
    assert Settings().rancher_namespaces == ("fleet-default", "fleet-local")
    assert Settings.from_env({}).rancher_namespaces == ("fleet-default", "fleet-local")
    assert Settings.from_env({"HERD_RANCHER_NAMESPACES": "ws-a"}).rancher_namespaces == ("ws-a",)
    assert Settings.from_env({"HERD_RANCHER_NAMESPACES": ""}).rancher_namespaces == ()
