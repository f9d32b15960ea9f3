"""Charts pulled once per pass, for every cluster of the pass.

`ChartCache` pulls each (repo, chart, version, private source) once; every cluster installs
from the same unpacked directory. A private source's credentials and CA reach helm only as
0600 files (`herd.helm.source_files`), never as arguments. A tenant Stack's repository is
checked against the egress policy (`herd.helm.egress_guard`) before any pull, and charts
Herd ships (`herd.helm.bundled`) are copied instead of pulled.

Callers: `herd.rollout` (the scheduler makes one per pass, the actions read it), tests.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path

from herd.api.charts import ChartSpec
from herd.helm.bundled import BUNDLED_REPO, bundled_chart
from herd.helm.environment import HelmEnvironment, HelmError, in_background
from herd.helm.failures import FailureKind, HelmFailure, classify, update_failure
from herd.helm.source_files import source_files
from herd.plan.chart_sources import ChartSource


class ChartCache:
    """Charts pulled once per pass: concurrent callers for one chart share one pull.

    Each pass unpacks into its own directory under `directory` (default: the environment's
    `charts`, else the system temp directory), made on the first pull and removed by
    `close()`.
    """

    def __init__(
        self,
        env: HelmEnvironment,
        directory: Path | None = None,
        *,
        slot: Callable[[], AbstractAsyncContextManager[None]] | None = None,
        guard: Callable[[ChartSpec], Awaitable[None]] | None = None,
    ) -> None:
        self._command = env.command()
        # A tenant Stack's egress check (`herd.helm.egress_guard.RepoGuard`): before any pull.
        self._guard = guard
        self._home = env.home
        self._parent = directory or env.charts
        self._slot = slot or nullcontext  # the rollout's helm slot: a pull is a helm process
        self._directory: Path | None = None  # made on the first pull: no-op passes make none
        self._pulls: dict[tuple[str, str, str, str], asyncio.Task[Path]] = {}

    async def get(self, chart: ChartSpec, source: ChartSource | None = None) -> Path:
        """The unpacked chart directory; raises HelmFailure when it cannot be pulled.

        A private `source` (`herd.plan.chart_sources`) is part of the key: a pull made with one
        Stack's credentials never serves another Stack's chart."""
        if self._guard is not None:
            await self._guard(chart)  # a refused repository is never contacted
        key = (chart.repo, chart.chart_name, chart.version, source.identity if source else "")
        if key not in self._pulls:
            self._pulls[key] = asyncio.ensure_future(self._pull(chart, source))
        return await asyncio.shield(self._pulls[key])

    def prefetch(self, chart: ChartSpec, source: ChartSource | None = None) -> None:
        """Start `get` now, for a release that will install once its dependencies have:
        its pull (egress check first, as always) runs while they install. A failure is
        kept for that release's own `get`; a release that never asks loses nothing."""
        in_background(self.get(chart, source))

    async def _pull(self, chart: ChartSpec, source: ChartSource | None) -> Path:
        if chart.repo == BUNDLED_REPO:
            return self._bundled(chart)
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="herd-charts-", dir=self._parent))
        destination = Path(tempfile.mkdtemp(dir=self._directory))
        secret = source.secret if source is not None else None
        try:
            # `--flag=value` and `--` before the chart: nothing from the spec is read as a flag.
            # Credentials reach helm only in files of the private home (`herd.helm.source_files`).
            async with self._slot():
                with source_files(self._home, chart, source) as pull:
                    if pull.repo_name is not None:
                        await self._update(chart, pull.repo_name, pull.update_flags, secret)
                    await self._command.run(
                        [
                            "pull",
                            f"--version={chart.version}",
                            "--untar",
                            f"--destination={destination}",
                            *([f"--repo={pull.repo_url}"] if pull.repo_url else []),
                            *pull.flags,
                            "--",
                            pull.ref,
                        ]
                    )
        except HelmError as error:
            stderr = error.stderr.decode(errors="replace")
            raise classify(stderr, pulling=True, repo=chart.repo, secret=secret) from None
        return next(destination.glob("*/Chart.yaml")).parent

    async def _update(
        self, chart: ChartSpec, name: str, flags: list[str], secret: str | None
    ) -> None:
        """`helm repo update NAME`: the named repository's index into the pull's own cache.
        helm 3 exits 0 when the index cannot be fetched (the reason is on stdout)."""
        try:
            output: bytes = await self._command.run(["repo", "update", *flags, "--", name])
        except HelmError as error:  # helm 4: exit 1, the reason still on stdout
            output = error.stdout + b"\n" + error.stderr
        reason = update_failure(output.decode(errors="replace"))
        if reason is not None:
            raise classify(reason, pulling=True, repo=chart.repo, secret=secret)

    def _bundled(self, chart: ChartSpec) -> Path:
        """A chart shipped with Herd (`herd.helm.bundled`), copied as a pull would unpack it."""
        source = bundled_chart(chart.chart_name, chart.version)
        if source is None:
            raise HelmFailure(
                FailureKind.CHART_NOT_FOUND,
                f"Herd ships no chart {chart.chart_name} {chart.version}",
                transient=False,
            )
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="herd-charts-", dir=self._parent))
        destination = Path(tempfile.mkdtemp(dir=self._directory)) / source.name
        shutil.copytree(source, destination)
        return destination

    def close(self) -> None:
        for task in self._pulls.values():
            task.cancel()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
