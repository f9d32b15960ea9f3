"""Rows that say what happened, and a spec change that ends the backoff (issue 21).

`herd operator` as a process, on three downstream clusters that all answer. The Stack's
chart repository is a loopback port nothing serves: every cluster's row must name that
(the chart source failed, retrying at a named time), never call the cluster Unreachable, also on
the passes where the cluster is left alone in its backoff. Then the URL is fixed: the new
generation is tried at once on every cluster, not after the backoff it built up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.test_operator import Operator, eventually, run_operator
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.processes import free_port

FLEET_NS = "fleet-rc"
STACK = "rc-stack"
NS = "op-rc"
IDS = {
    "downstream-1": "c-m-rc000001",
    "downstream-2": "c-m-rc000002",
    "downstream-3": "c-m-rc000003",
}
LABELS = {name: {"team": "rc"} for name in IDS}
# A long first backoff (60-120 s after one failure): a fix that waited it out would be
# far slower than the bound below. Passes run every few seconds meanwhile (the resync).
RETRY_SECONDS = 120
FIXED_WITHIN = 30.0
RETRYING = re.compile(r"retrying at \d\d:\d\d:\d\dZ")  # a fixed time: no countdown churn


@pytest.fixture(scope="module")
def operator(
    management: BedCluster, downstream: list[BedCluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    with run_operator(
        management,
        downstream,
        tmp_path_factory.mktemp("row-causes"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
        env={
            "HERD_RETRY_SECONDS": str(RETRY_SECONDS),
            "HERD_BACKOFF_MAX_SECONDS": str(2 * RETRY_SECONDS),  # not the suite's short cap
            "HERD_RESYNC_SECONDS": "3",
        },
    ) as running:
        running.name = STACK
        yield running


def stack(repo: str) -> dict[str, Any]:
    chart = {"name": "db", "chart": "app", "repo": repo, "version": "0.1.0", "namespace": NS}
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": STACK, "namespace": "default"},
        "spec": {
            "env": "test",
            "targets": {"selector": {"matchLabels": {"team": "rc"}}},
            "charts": [chart],
        },
    }


def rows(operator: Operator) -> dict[str, dict[str, Any]]:
    return {r["clusterId"]: r for r in operator.status().get("deployments", [])}


def test_rows_name_the_chart_source_and_a_new_generation_retries_at_once(
    operator: Operator, chart_repo_url: str, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/charts"
    operator.apply(stack(dead))
    seen: list[dict[str, Any]] = []

    def every_row_waits_for_its_retry() -> dict[str, dict[str, Any]] | None:
        now = rows(operator)
        seen.extend(now.values())
        waiting = [r for r in now.values() if RETRYING.search(r.get("message", ""))]
        return now if len(now) == 3 and len(waiting) == 3 else None

    try:
        eventually("every row to name its retry", every_row_waits_for_its_retry, timeout=60)
    except AssertionError as error:
        said = sorted({(r["clusterId"], r["status"], r.get("message", "")) for r in seen})
        raise AssertionError(f"{error}; the rows said: {said}") from None
    # Several passes with every cluster in its backoff: the rows stay as they were.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        seen.extend(rows(operator).values())
        time.sleep(0.5)
    states = {(r["clusterId"], r["status"], r.get("message", "")) for r in seen}
    assert not [s for s in states if s[1] == "Unreachable"], states
    failed = [s for s in states if s[1] == "Failed"]
    assert {s[0] for s in failed} == set(IDS.values()), states
    assert all("127.0.0.1" in s[2] or "index.yaml" in s[2] for s in failed), states

    fixed = time.monotonic()
    operator.apply(stack(chart_repo_url))
    status = operator.settled("Deployed")
    took = time.monotonic() - fixed
    assert {r["status"] for r in status["deployments"]} == {"Deployed"}
    assert len(status["deployments"]) == 3
    assert took < FIXED_WITHIN, f"the fix waited out the backoff: {took:.0f}s"
