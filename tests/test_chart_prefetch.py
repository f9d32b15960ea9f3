"""`ChartCache.prefetch`: a release's pull started early is the one its `get` returns, and
a failure waits for that `get` (nothing is logged as never retrieved, nothing else fails).

The rollout's side (a dependent release's chart pulled while its dependency installs, no
helm for a pass with nothing to do) is checked on the test bed: `e2e/test_cli.py`.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from herd.api.charts import ChartSpec
from herd.helm.bundled import BUNDLED_REPO
from herd.helm.chart_cache import ChartCache
from herd.helm.egress_guard import RepoGuard
from herd.helm.environment import HelmEnvironment
from herd.helm.failures import FailureKind, HelmFailure
from herd.operator.config import OperatorConfig
from herd.plan.egress import Endpoint

POLICY = OperatorConfig.from_env({}).egress.with_api_servers([Endpoint("10.0.0.1", 6443)])


def chart(name: str, repo: str, version: str = "0.1.0") -> ChartSpec:
    return ChartSpec.model_validate({"name": name, "chart": name, "repo": repo, "version": version})


async def test_a_prefetched_chart_is_the_one_its_get_returns() -> None:
    env = HelmEnvironment()
    cache = ChartCache(env)
    insights = chart("herd-insights", BUNDLED_REPO)  # copied from the package: no helm
    try:
        cache.prefetch(insights)
        cache.prefetch(insights)  # a second release of the same chart shares the pull
        await asyncio.sleep(0)
        assert len(cache._pulls) == 1
        (pull,) = cache._pulls.values()
        path = await cache.get(insights)
        assert pull.done() and pull.result() == path
        assert (path / "Chart.yaml").is_file()
    finally:
        cache.close()
        env.close()


async def test_a_failed_prefetch_waits_for_its_get_and_logs_nothing() -> None:
    unhandled: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: unhandled.append(context))
    env = HelmEnvironment()
    refused = chart("bad", "http://127.0.0.1:1")
    cache = ChartCache(env, guard=RepoGuard.for_charts(POLICY, [refused]))
    try:
        cache.prefetch(refused)
        await asyncio.wait(asyncio.all_tasks() - {asyncio.current_task()})  # reads no result
        gc.collect()  # a task whose failure nobody read is reported when collected
        assert unhandled == []
        assert cache._pulls == {}  # the guard refused it before any pull
        with pytest.raises(HelmFailure) as raised:  # the release's own get says why
            await cache.get(refused)
        assert raised.value.kind is FailureKind.EGRESS_DENIED
    finally:
        cache.close()
        env.close()
