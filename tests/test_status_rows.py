"""Status rows: the first `limit` in order (failing first), chosen by a partial sort."""

from __future__ import annotations

import random

import pytest

from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.build import rows

STATES = [State.DEPLOYED, State.FAILED, State.PENDING, State.DEPLOYING, State.UNINSTALLED]


@pytest.mark.parametrize("limit", [0, 1, 7, 100, 1000])
def test_rows_are_the_first_of_the_full_order(limit: int) -> None:
    pick = random.Random(limit)
    releases = [
        ReleaseResult(
            ReleaseKey(f"c{pick.randrange(30)}", f"n{pick.randrange(3)}", f"r{i}"),
            "chart",
            pick.choice(STATES),
        )
        for i in range(300)
    ]
    got = [(r.cluster_id, r.namespace, r.release_name, r.status) for r in rows(releases, limit)]
    live = [r for r in releases if r.state is not State.UNINSTALLED]
    assert len(got) == min(limit, len(live))
    failed = [g for g in got if g[3] == State.FAILED.value]
    assert got[: len(failed)] == failed  # failing rows first
    full = rows(releases, len(releases))  # a full sort: the first rows must be the same
    assert [(r.cluster_id, r.namespace, r.release_name) for r in full[:limit]] == [
        g[:3] for g in got
    ]
