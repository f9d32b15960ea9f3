"""Find or build the peers `benchmarks/peers.py` runs against Herd: helmfile and Flux.

Callers: `benchmarks/peers.py` (via `ensure`) and `python -m benchmarks.peer_tools` (build
or seed the cache, print the paths). Never `make test`: nothing under tests/ or e2e/
imports this module, and nothing here runs unless the peer benchmark does.

Cache and lock follow `e2e.testbed.binaries`: each program is built once into
`${HERD_CACHE:-~/.cache/herd}/peers/<name>-<version>/` (staged in a sibling directory and
renamed into place, with a `build-info.json`), under a lock file beside it so concurrent
callers build once.

- helmfile comes from the Go module proxy. `go install` refuses it (its go.mod has
  `replace` directives), so the module is `go mod download`ed and built with `go build`
  inside a writable copy.
- Flux source-controller v1.10.1 cannot be built from the proxy: its `replace
  .../api => ./api` points into a nested module the module zip leaves out, and the proxy
  refuses several of its dependencies (fluxcd/pkg artifact, spiffe, masktoken,
  http/transport, apis/crypto; sigstore/cosign v3.1.4). Only its module is downloaded (it
  needs Go 1.27: `GOTOOLCHAIN`), for the ExternalArtifact CRD: the benchmark hands
  helm-controller its charts as ExternalArtifacts (`benchmarks._peers_flux`).
- Flux helm-controller is not on the proxy, and this repository ships no recipe for it: the
  user builds it from a checkout of fluxcd/helm-controller (`go build` at the tag) and names
  the binary with `HERD_FLUX_HELM_CONTROLLER_BIN` (or puts it, or a symlink to it, at
  `~/.cache/herd/peers/helm-controller`). Its CRDs are read from that checkout
  (`config/crd/bases` beside the binary, or `HERD_FLUX_HELM_CONTROLLER_CRDS`). Without them
  the Flux column is skipped, saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from e2e.testbed.binaries import cache_root, file_lock, staged

BUILD_INFO = "build-info.json"
HELM_CONTROLLER_VERSION = "v1.6.3"  # what the README's table was measured with
HELM_CONTROLLER_BIN = "HERD_FLUX_HELM_CONTROLLER_BIN"
HELM_CONTROLLER_CRDS = "HERD_FLUX_HELM_CONTROLLER_CRDS"


class PeerBuildError(RuntimeError):
    """Downloading or building a peer failed; the message carries go's output tail."""


@dataclass(frozen=True)
class GoPeer:
    """A peer program built from a module of the Go module proxy."""

    name: str
    module: str
    version: str
    toolchain: str = ""  # GOTOOLCHAIN, when the module needs a newer Go than the host's
    crds: str = ""  # a directory of the module whose CRDs the benchmark applies
    binary: bool = True  # False: only the CRDs are kept
    version_flag: str = ""  # the -X flag that gives `--version` the module's version

    def directory(self) -> Path:
        return cache_root() / "peers" / f"{self.name}-{self.version}"

    def path(self) -> Path:
        return self.directory() / self.name

    def crd_dir(self) -> Path:
        return self.directory() / "crds"

    def built(self) -> bool:
        recorded = (self.directory() / BUILD_INFO).is_file()
        return recorded and (not self.binary or os.access(self.path(), os.X_OK))


HELMFILE = GoPeer(
    "helmfile",
    "github.com/helmfile/helmfile",
    "v1.8.0",
    version_flag="go.szostok.io/version.version",  # else `helmfile --version`: 0.0.0-dev
)
SOURCE_CONTROLLER = GoPeer(
    "source-controller",
    "github.com/fluxcd/source-controller",
    "v1.10.1",
    toolchain="go1.27.3",
    crds="config/crd/bases",
    binary=False,
)
PEERS = (HELMFILE, SOURCE_CONTROLLER)


@dataclass(frozen=True)
class HelmController:
    """The user-provided helm-controller binary and the CRD directory of its checkout."""

    binary: Path
    crds: Path


def ensure(peer: GoPeer, seed: Path | None = None, log: bool = True) -> Path:
    """The peer's binary (its cache directory when `binary` is False), built (or copied
    from `seed`, a directory holding a binary of that name built from the same module and
    version) into the cache when missing."""
    if not peer.built():
        with _lock(peer):
            if not peer.built():
                _build(peer, seed, log)
    return peer.path() if peer.binary else peer.directory()


def helm_controller() -> HelmController | str:
    """The helm-controller to run, or why there is none (the Flux column is skipped)."""
    named = os.environ.get(HELM_CONTROLLER_BIN)
    binary = Path(named) if named else cache_root() / "peers" / "helm-controller"
    if not os.access(binary, os.X_OK) or binary.is_dir():
        return (
            f"no helm-controller at {binary} ({HELM_CONTROLLER_BIN} or "
            f"{cache_root() / 'peers' / 'helm-controller'}): build it with `go build` in a "
            f"checkout of fluxcd/helm-controller {HELM_CONTROLLER_VERSION}"
        )
    crds_named = os.environ.get(HELM_CONTROLLER_CRDS)
    crds = Path(crds_named) if crds_named else binary.resolve().parent / "config" / "crd" / "bases"
    if not any(crds.glob("*helmreleases*.yaml")):
        return (
            f"no HelmRelease CRD in {crds}: set {HELM_CONTROLLER_CRDS} to the checkout's "
            "config/crd/bases"
        )
    return HelmController(binary, crds)


def _build(peer: GoPeer, seed: Path | None, log: bool) -> None:
    how = "CRDs only"

    def compile_into(staging: Path) -> dict[str, object]:
        nonlocal how
        source = _download(peer)
        if peer.crds:
            shutil.copytree(source / peer.crds, staging / "crds")
        if peer.binary and seed is not None and os.access(seed / peer.name, os.X_OK):
            shutil.copy2(seed / peer.name, staging / peer.name)
            how = f"seeded from {seed / peer.name}"
        elif peer.binary:
            _go_build(peer, source, staging)
            how = "go build"
        return {peer.name: peer.version, "module": peer.module, "how": how}

    seconds = staged(peer.directory(), compile_into)
    if log:
        print(f"{peer.name} {peer.version}: {how} in {seconds}s", file=sys.stderr)


def _download(peer: GoPeer) -> Path:
    """`go mod download` the module; return its (read-only) directory in the module cache."""
    result = _go(["mod", "download", "-json", f"{peer.module}@{peer.version}"], peer, Path.cwd())
    return Path(json.loads(result)["Dir"])


def _go_build(peer: GoPeer, source: Path, staging: Path) -> None:
    # The module cache is read-only and `replace` directives need the module's own go.mod:
    # build inside a writable copy of it.
    work = staging / "src"
    shutil.copytree(source, work)
    for directory, _, files in os.walk(work):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(Path(directory) / name, 0o644)
    ldflags = "-s -w" + (f" -X {peer.version_flag}={peer.version}" if peer.version_flag else "")
    try:
        _go(
            ["build", "-trimpath", f"-ldflags={ldflags}", "-o", str(staging / peer.name), "."],
            peer,
            work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _go(args: list[str], peer: GoPeer, cwd: Path) -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    # The caller's GOFLAGS (e.g. `-p=1` on a shared machine) are kept, after ours.
    flags = f"-mod=mod -buildvcs=false {os.environ.get('GOFLAGS', '')}".strip()
    env = {**os.environ, "GOFLAGS": flags, "CGO_ENABLED": "0"}
    if peer.toolchain:
        env["GOTOOLCHAIN"] = peer.toolchain
    result = subprocess.run(
        [go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise PeerBuildError(f"go {args[0]} for {peer.module}@{peer.version} failed:\n{tail}")
    return result.stdout


def _lock(peer: GoPeer) -> AbstractContextManager[None]:
    return file_lock(peer.directory().with_name(f"{peer.directory().name}.lock"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peer_tools",
        description="Build (if needed) and print the peers of the peer benchmark.",
    )
    parser.add_argument("--seed", type=Path, help="copy binaries from DIR instead of building")
    args = parser.parse_args(argv)
    try:
        for peer in PEERS:
            print(f"{peer.name}\t{ensure(peer, args.seed)}")
    except PeerBuildError as error:
        print(error, file=sys.stderr)
        return 1
    found = helm_controller()
    print(f"helm-controller\t{found if isinstance(found, str) else found.binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
