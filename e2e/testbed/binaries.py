"""Find or build the control-plane binaries the local test bed runs.

Callers: `e2e.testbed.controlplane` (via `resolve`), `e2e/conftest.py` (via `ensure`,
or `resolve` alone in CI) and the Makefile / `.ci/run` (`python -m e2e.testbed.binaries`).

Lookup order, per binary:
1. `$KUBEBUILDER_ASSETS` when it holds both kube-apiserver and etcd (the envtest
   layout); those two come from there, the rest still from the cache;
2. the cache `${HERD_CACHE:-~/.cache/herd}/bin/<k8s-version>/`, outside the repository
   so a fresh clone or `git clean` does not cost a rebuild.

Three more programs are built the same way, each into a cache directory of its own
(`bin/helm-<version>/`, `bin/registry-<version>/`, `bin/prometheus-<version>/`) so that a
version bump of one does not rebuild Kubernetes: Helm 4 (`tools/helm`), which Herd runs on
in the test bed, the CNCF distribution registry (`tools/registry`), the private OCI
registry of the test bed, and the Prometheus server (`tools/prometheus`, `cmd/prometheus`
without the web UI's assets), one per downstream cluster (`e2e.testbed.prometheus`).

A missing cache is filled by building from source with the Go toolchain: the modules
under `e2e/testbed/tools/` pin Kubernetes, etcd, kwok, helm and distribution, and the Go
module proxy is the only network this needs. A lock file makes concurrent callers build
once.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

# Keep in step with e2e/testbed/tools/go.mod (k8s.io/kubernetes and its staging
# replaces), tools/kwok/go.mod and the etcd version k8s.io/kubernetes requires.
KUBERNETES_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.5"
KWOK_VERSION = "v0.8.0"
# Keep in step with tools/helm/go.mod, tools/registry/go.mod and tools/prometheus/go.mod.
HELM_VERSION = "v4.3.2"
REGISTRY_VERSION = "v3.1.2"
PROMETHEUS_VERSION = "v0.316.0"  # the Go module of Prometheus 3.16.0

TOOLS_DIR = Path(__file__).resolve().parent / "tools"
BUILD_INFO = "build-info.json"

# Go package -> output name, per module directory under TOOLS_DIR.
_KUBERNETES_PACKAGES = {
    "k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
    "k8s.io/kubernetes/cmd/kube-controller-manager": "kube-controller-manager",
    "k8s.io/kubernetes/cmd/kube-scheduler": "kube-scheduler",
    # etcd's server module has its main package at the module root.
    "go.etcd.io/etcd/server/v3": "etcd",
}
_KWOK_PACKAGES = {"sigs.k8s.io/kwok/cmd/kwok": "kwok"}
# A real node's programs (`node_tools`), built only when a lane asks for them.
_NODE_PACKAGES = {
    "k8s.io/kubernetes/cmd/kubelet": "kubelet",
    "k8s.io/kubernetes/cmd/kubectl": "kubectl",
}
_ENVTEST_NAMES = ("kube-apiserver", "etcd")


@dataclass(frozen=True)
class _Tool:
    """A program built from a module of its own into `bin/<name>-<version>/<name>`."""

    name: str
    version: str
    package: str
    ldflags: str
    tags: str = ""  # go build -tags

    @property
    def module(self) -> Path:
        return TOOLS_DIR / self.name

    def directory(self) -> Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}"

    def path(self) -> Path:
        return self.directory() / self.name

    def built(self) -> bool:
        return (self.directory() / BUILD_INFO).is_file() and os.access(self.path(), os.X_OK)


def _prometheus_ldflags(module_version: str) -> str:
    # Prometheus 3 publishes release 3.X.Y as Go module v0.3XX.Y: v0.316.0 is 3.16.0.
    minor = module_version.lstrip("v").split(".")[1]
    release = f"{minor[0]}.{int(minor[1:])}.{module_version.split('.')[2]}"
    package = "github.com/prometheus/common/version"
    return f"-X {package}.Version={release} -X {package}.Branch=HEAD"


_TOOLS = (
    # `helm version` reads these: without them it says v4.0+unreleased.
    _Tool(
        "helm",
        HELM_VERSION,
        "helm.sh/helm/v4/cmd/helm",
        f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",
    ),
    _Tool(
        "registry",
        REGISTRY_VERSION,
        "github.com/distribution/distribution/v3/cmd/registry",
        f"-X github.com/distribution/distribution/v3/version.version={REGISTRY_VERSION}",
    ),
    # `prometheus --version` and its build_info metric read these (else an empty version).
    # remove_all_sd leaves out every service discovery but static_configs (the cloud SDKs:
    # most of a cold build's time); without builtinassets the web UI is not embedded.
    _Tool(
        "prometheus",
        PROMETHEUS_VERSION,
        "github.com/prometheus/prometheus/cmd/prometheus",
        _prometheus_ldflags(PROMETHEUS_VERSION),
        tags="remove_all_sd",
    ),
)


class BinariesMissingError(RuntimeError):
    """The binaries are not on disk and the caller asked not to build them."""


class BuildError(RuntimeError):
    """`go build` failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of every program one control plane runs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    etcd: Path
    helm: Path  # Helm 4, the helm Herd runs on in the test bed
    registry: Path  # CNCF distribution, the test bed's private OCI registry
    prometheus: Path  # the Prometheus server, one per downstream cluster

    def paths(self) -> dict[str, Path]:
        return {
            "kube-apiserver": self.kube_apiserver,
            "kube-controller-manager": self.kube_controller_manager,
            "kube-scheduler": self.kube_scheduler,
            "kwok": self.kwok,
            "etcd": self.etcd,
            "helm": self.helm,
            "registry": self.registry,
            "prometheus": self.prometheus,
        }


def cache_root() -> Path:
    return Path(os.environ.get("HERD_CACHE") or Path.home() / ".cache" / "herd")


def cache_dir() -> Path:
    return cache_root() / "bin" / KUBERNETES_VERSION


def resolve() -> Binaries:
    """Return the binaries without building; raise BinariesMissingError if absent."""
    found = _cached() or {}
    found.update(_envtest_assets())
    found.update({tool.name: tool.path() for tool in _TOOLS if tool.built()})
    names = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "etcd")
    missing = [name for name in (*names, *(tool.name for tool in _TOOLS)) if name not in found]
    if missing:
        raise BinariesMissingError(
            f"test-bed binaries missing: {', '.join(missing)} (looked in {cache_root() / 'bin'}"
            f" and $KUBEBUILDER_ASSETS); build them with `python -m e2e.testbed.binaries`"
        )
    return Binaries(
        kube_apiserver=found["kube-apiserver"],
        kube_controller_manager=found["kube-controller-manager"],
        kube_scheduler=found["kube-scheduler"],
        kwok=found["kwok"],
        etcd=found["etcd"],
        helm=found["helm"],
        registry=found["registry"],
        prometheus=found["prometheus"],
    )


def ensure(log: bool = True) -> Binaries:
    """Return the binaries, building the cache first if it is incomplete."""
    try:
        return resolve()
    except BinariesMissingError:
        pass
    with _build_lock():
        # Another process may have finished the build while we waited for the lock.
        if _cached() is None:
            build(log=log)
        for tool in _TOOLS:
            if not tool.built():
                build_tool(tool, log=log)
    return resolve()


def node_tools(build_missing: bool = True, log: bool = True) -> dict[str, Path]:
    """kubelet and kubectl of KUBERNETES_VERSION, from the same module as the apiserver,
    in `bin/node-<version>/`; built first if missing (else BinariesMissingError)."""
    target = cache_root() / "bin" / f"node-{KUBERNETES_VERSION}"
    paths = {name: target / name for name in _NODE_PACKAGES.values()}

    def built() -> bool:
        return (target / BUILD_INFO).is_file() and all(
            os.access(p, os.X_OK) for p in paths.values()
        )

    def compile_into(staging: Path) -> dict[str, object]:
        _go_build(TOOLS_DIR, _NODE_PACKAGES, staging, _version_ldflags(), log)
        return {"kubernetes": KUBERNETES_VERSION}

    if built():
        return paths
    if not build_missing:
        raise BinariesMissingError(f"no kubelet/kubectl in {target}: node_tools() builds them")
    with file_lock(target.with_name(f"{target.name}.lock")):
        if not built():
            staged(target, compile_into)
    return paths


def build_info() -> dict[str, object] | None:
    """What the last build recorded (versions, seconds it took), if there was one."""
    path = cache_dir() / BUILD_INFO
    if not path.is_file():
        return None
    data: dict[str, object] = json.loads(path.read_text())
    return data


def build(log: bool = True) -> Path:
    """Build every binary into a fresh cache directory and return it (`staged`)."""
    target = cache_dir()

    def compile_into(staging: Path) -> dict[str, object]:
        _go_build(TOOLS_DIR, _KUBERNETES_PACKAGES, staging, _version_ldflags(), log)
        _go_build(TOOLS_DIR / "kwok", _KWOK_PACKAGES, staging, "", log)
        return {"kubernetes": KUBERNETES_VERSION, "etcd": ETCD_VERSION, "kwok": KWOK_VERSION}

    seconds = staged(target, compile_into)
    if log:
        print(f"built test-bed binaries in {seconds:.0f}s into {target}", file=sys.stderr)
    return target


def build_tool(tool: _Tool, log: bool = True) -> Path:
    """Build one program of `_TOOLS` into its own cache directory (`staged`)."""

    def compile_into(staging: Path) -> dict[str, object]:
        _go_build(tool.module, {tool.package: tool.name}, staging, tool.ldflags, log, tool.tags)
        return {tool.name: tool.version, **({"tags": tool.tags} if tool.tags else {})}

    staged(tool.directory(), compile_into)
    return tool.directory()


def staged(target: Path, compile_into: Callable[[Path], dict[str, object]]) -> float:
    """Build into a sibling temporary directory, record what was built (versions, seconds,
    cold or warm Go cache) in BUILD_INFO, and rename it into place: a reader never sees a
    half-filled cache and an interrupted build leaves nothing behind. Returns the seconds.
    Also `benchmarks.peer_tools`'s."""
    staging = target.with_name(f".{target.name}.build-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # Whether this build's time is a cold figure worth quoting, or a relink.
    go_cache = "warm" if _go_cache_has_entries() else "cold"
    started = time.monotonic()
    try:
        info = compile_into(staging)
        seconds = round(time.monotonic() - started, 1)
        info.update(
            {
                "build_seconds": seconds,
                "go_build_cache": go_cache,
                "go": _go_version(),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        (staging / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return seconds


def _cached() -> dict[str, Path] | None:
    directory = cache_dir()
    if not (directory / BUILD_INFO).is_file():
        return None
    names = [*_KUBERNETES_PACKAGES.values(), *_KWOK_PACKAGES.values()]
    paths = {name: directory / name for name in names}
    if not all(os.access(path, os.X_OK) for path in paths.values()):
        return None
    return paths


def _envtest_assets() -> dict[str, Path]:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return {}
    paths = {name: Path(assets).resolve() / name for name in _ENVTEST_NAMES}
    if all(os.access(path, os.X_OK) for path in paths.values()):
        return paths
    return {}


def _version_ldflags() -> str:
    # What hack/lib/version.sh stamps into release builds: without it the binaries say
    # v0.0.0-master, and helm's .Capabilities.KubeVersion / kubectl version would lie.
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": KUBERNETES_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    packages = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    return " ".join(f"-X {pkg}.{key}={value}" for pkg in packages for key, value in values.items())


def _go_build(
    module: Path, packages: dict[str, str], out: Path, ldflags: str, log: bool, tags: str = ""
) -> None:
    for package, name in packages.items():
        started = time.monotonic()
        command = [
            _go(),
            "build",
            *(["-tags", tags] if tags else []),
            "-trimpath",
            "-ldflags",
            f"-s -w {ldflags}".strip(),
            "-o",
            str(out / name),
            package,
        ]
        result = subprocess.run(
            command,
            cwd=module,
            env=_go_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join(result.stdout.splitlines()[-40:])
            raise BuildError(f"go build {package} failed in {module}:\n{tail}")
        if log:
            print(f"  {name}: {time.monotonic() - started:.0f}s", file=sys.stderr)


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(found, os.X_OK):
        raise BuildError("the Go toolchain is needed to build the test-bed binaries: no `go`")
    return found


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # -mod=mod: let go fill go.sum for a platform-specific dependency if one is missing
    # rather than fail; static binaries so they do not care about the host's libc.
    env.update({"GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "0"})
    return env


def _go_cache_has_entries() -> bool:
    result = subprocess.run(
        [_go(), "env", "GOCACHE"], capture_output=True, text=True, check=False, env=_go_env()
    )
    cache = Path(result.stdout.strip())
    # The cache keeps its entries in 256 two-hex-digit subdirectories.
    return cache.is_dir() and any(
        any(sub.iterdir()) for sub in cache.iterdir() if sub.is_dir() and len(sub.name) == 2
    )


def _go_version() -> str:
    result = subprocess.run([_go(), "version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def _build_lock() -> AbstractContextManager[None]:
    return file_lock(cache_root() / "bin" / f"{KUBERNETES_VERSION}.lock")


@contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """An exclusive lock on `lock_path` (created), so that concurrent callers build once;
    also `benchmarks.peer_tools`'s."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.testbed.binaries",
        description="Build (if needed) and print the local test bed's binaries.",
    )
    parser.add_argument("--check", action="store_true", help="only check; never build")
    parser.add_argument("--rebuild", action="store_true", help="build even if cached")
    args = parser.parse_args(argv)
    try:
        if args.rebuild:
            with _build_lock():
                build()
                for tool in _TOOLS:
                    build_tool(tool)
        binaries = resolve() if args.check else ensure()
    except (BinariesMissingError, BuildError) as error:
        print(error, file=sys.stderr)
        return 1
    for name, path in binaries.paths().items():
        print(f"{name}\t{path}")
    info = build_info()
    if info:
        cache = info.get("go_build_cache", "unknown")
        print(
            f"build\t{info.get('build_seconds')}s, Go build cache {cache} ({info.get('built_at')})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
