"""Build Herd's controller image from the repository's Dockerfile, with no image pulled.

Role: the test bed can pull no base image (no registry access), so it makes its own from
Debian packages and fills the Dockerfile's build arguments with them:

1. the base: Debian bookworm's Python 3.11 (`python3`, `python3-venv`, CA certificates),
   bootstrapped by `mmdebstrap` into a root-filesystem tarball cached beside the other
   test-bed binaries (`~/.cache/herd/image/`), imported into podman's storage;
2. the Helm stage: the base plus the test bed's own Helm 4 (built by `binaries` from the
   same `tools/helm` go.mod/go.sum as the Dockerfile's Go build), passed as HELM_BUILDER
   with HELM_PREBUILT, so no Go image is needed;
3. `buildah bud` of the Dockerfile with BASE_IMAGE and those, `--layers` so that an
   unchanged source tree rebuilds in seconds. The host's CA bundle is mounted into the
   build for pip (PIP_CERT): a TLS-inspecting proxy between the bed and PyPI works.

Running the image (`run_args`): `podman run` through `runc`, because crun refuses hosts
with hybrid cgroups, and with explicit ulimits no higher than this process's own (a
sandbox without CAP_SYS_RESOURCE refuses podman's defaults).

Missing tools (buildah, podman, mmdebstrap, runc) are installed with apt-get when this
runs as root on Debian, saying so; otherwise the error names the packages.

Callers: `make image` (`python -m e2e.testbed.image`), `e2e/test_image.py`, and
`e2e.testbed.shell_standin` (the base, `ensure_tools`, `run_step`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from e2e.testbed import binaries

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/herd/herd-controller"
BASE_IMAGE = "localhost/herd/testbed-python"
HELM_IMAGE = "localhost/herd/testbed-helm"
HELM_PREBUILT = "/usr/local/bin/helm"
# The Debian base: the suite, what the Dockerfile needs of a base (python3 with venv) and
# nothing else; documentation and translations are left out (licences stay).
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
# Debian package of each program this module runs.
TOOLS = {"buildah": "buildah", "podman": "podman", "mmdebstrap": "mmdebstrap", "runc": "runc"}
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
BUILD_CA = "/run/herd-build-ca.crt"
ULIMIT_CAP = 8192
CAPTURE_TAIL = 40  # lines of a failed command's output in the error


class ImageError(RuntimeError):
    """A tool is missing or a build step failed; the message says which and why."""


@dataclass(frozen=True)
class Built:
    """The image `build` produced, and what it cost."""

    ref: str
    seconds: float
    base_seconds: float  # bootstrapping the Debian base (0 when cached)
    size_bytes: int

    def summary(self) -> str:
        return (
            f"{self.ref}: {self.size_bytes / 1e6:.0f} MB, built in {self.seconds:.0f}s"
            f" (base bootstrap {self.base_seconds:.0f}s)"
        )


def ensure_tools(log: bool = True) -> None:
    """Install the missing image tools with apt-get (root, Debian), or say which are missing."""
    apt_install(sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}), log)


def apt_install(missing: list[str], log: bool = True, lane: str = "image lane") -> None:
    """Install Debian packages with apt-get (root, Debian), or say which are missing."""
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ImageError(
            f"the {lane} needs the Debian packages {', '.join(missing)}: "
            f"apt-get install -y {' '.join(missing)}"
        )
    if log:
        print(f"{lane}: installing {', '.join(missing)} with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-q"], env=env)
    _run(["apt-get", "install", "-y", "-q", *missing], env=env)


def base_key() -> str:
    """What the base is made of, hashed: a change of it makes a new tarball and image."""
    recipe = json.dumps([SUITE, PACKAGES, DPKG_OPTIONS])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def base_tarball(log: bool = True) -> tuple[Path, float]:
    """The cached root filesystem of the base, bootstrapped first if missing; its seconds."""
    target = binaries.cache_root() / "image" / f"{SUITE}-python3-{base_key()}.tar"
    if target.is_file():
        return target, 0.0
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}")
    command = [
        "mmdebstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        "--format=tar",
        SUITE,
        str(staging),
    ]
    if log:
        print(f"image lane: bootstrapping Debian {SUITE} into {target}", file=sys.stderr)
    started = time.monotonic()
    try:
        _run(command)
        staging.rename(target)  # a reader never sees half a tarball
    finally:
        staging.unlink(missing_ok=True)
    return target, time.monotonic() - started


def base_image(log: bool = True) -> tuple[str, float]:
    """The base in podman's storage (imported from the tarball once); its bootstrap seconds."""
    ref = f"{BASE_IMAGE}:{SUITE}-{base_key()}"
    if _exists(ref):
        return ref, 0.0
    tarball, seconds = base_tarball(log)
    _run(["podman", "import", "--quiet", str(tarball), ref])
    return ref, seconds


def helm_image(base: str) -> str:
    """The base plus the test bed's Helm 4 at HELM_PREBUILT: the Dockerfile's HELM_BUILDER."""
    helm = binaries.ensure(log=False).helm
    digest = hashlib.sha256(helm.read_bytes()).hexdigest()[:12]
    ref = f"{HELM_IMAGE}:{binaries.HELM_VERSION}-{base.rsplit('-', 1)[-1]}-{digest}"
    if _exists(ref):
        return ref
    container = _run(["buildah", "from", "--quiet", base]).strip()
    try:
        _run(["buildah", "copy", "--quiet", "--chmod", "0755", container, str(helm), HELM_PREBUILT])
        _run(["buildah", "commit", "--quiet", container, ref])
    finally:
        _run(["buildah", "rm", container])
    return ref


def build(tag: str | None = None, log: bool = True) -> Built:
    """Build the Dockerfile into `IMAGE:<tag>` (default: the package version) and return it."""
    ensure_tools(log)
    started = time.monotonic()
    base, base_seconds = base_image(log)
    ref = f"{IMAGE}:{tag or _package_version()}"
    command = [
        *("buildah", "bud", "--layers", "--isolation", "chroot", "--network", "host"),
        *("--build-arg", f"BASE_IMAGE={base}"),
        *("--build-arg", f"HELM_BUILDER={helm_image(base)}"),
        *("--build-arg", f"HELM_PREBUILT={HELM_PREBUILT}"),
        *_build_ca_args(),
        *("--tag", ref, "--file", str(ROOT / "Dockerfile"), str(ROOT)),
    ]
    if log:
        print(f"image lane: buildah bud -> {ref}", file=sys.stderr)
    _run(command, stream=log)
    return Built(ref, time.monotonic() - started, base_seconds, size_bytes(ref))


def size_bytes(ref: str) -> int:
    return int(_run(["podman", "image", "inspect", "--format", "{{.Size}}", ref]).strip())


def run_args() -> list[str]:
    """`podman run` options that work on this host as on an ordinary one (module docstring)."""
    limits = []
    for name, kind in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = resource.getrlimit(kind)
        value = min(v for v in (soft, hard, ULIMIT_CAP) if v != resource.RLIM_INFINITY)
        limits += ["--ulimit", f"{name}={value}:{value}"]
    return ["--runtime", "runc", *limits]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """podman with `run_args` on `run`/`create`; the caller judges the exit code unless `check`."""
    argv = list(args)
    if argv and argv[0] in ("run", "create"):
        argv[1:1] = run_args()
    done = subprocess.run(["podman", *argv], capture_output=True, text=True, check=False)
    if check and done.returncode:
        raise ImageError(f"podman {' '.join(args[:3])} failed:\n{_tail(done.stderr)}")
    return done


def give_to(path: Path, uid: int) -> None:
    """Make a file the container's user may read (0600 stays): chown as root, else through
    `podman unshare` (rootless podman maps container uids onto the caller's sub-uids)."""
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
    else:
        _run(["podman", "unshare", "chown", f"{uid}:{uid}", str(path)])


def _build_ca_args() -> list[str]:
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    found = [bundle] if bundle and Path(bundle).is_file() else []
    found += [path for path in CA_BUNDLES if Path(path).is_file()]
    if not found:
        return []
    return ["--volume", f"{found[0]}:{BUILD_CA}:ro", "--build-arg", f"PIP_CERT={BUILD_CA}"]


def _package_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise ImageError("pyproject.toml has no version line")


def _exists(ref: str) -> bool:
    done = subprocess.run(["podman", "image", "exists", ref], capture_output=True, check=False)
    return done.returncode == 0


def _run(command: list[str], env: dict[str, str] | None = None, stream: bool = False) -> str:
    """Run a build step; its output goes to stderr when `stream` (a long build shows life)."""
    if stream:
        done = subprocess.run(command, env=env, stdout=sys.stderr, check=False)
        if done.returncode:
            raise ImageError(f"{' '.join(command[:3])} failed (exit {done.returncode})")
        return ""
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        output = _tail(result.stdout + result.stderr)
        raise ImageError(f"{' '.join(command[:3])} failed (exit {result.returncode}):\n{output}")
    return result.stdout


def run_step(command: list[str]) -> str:
    """One build step (buildah, podman) for other image builders: its stdout, or
    ImageError with the output's tail (also `e2e.testbed.shell_standin`'s)."""
    return _run(command)


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-CAPTURE_TAIL:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.testbed.image",
        description="Build Herd's controller image from the Dockerfile on a Debian base.",
    )
    parser.add_argument("--tag", help="image tag (default: the package version)")
    args = parser.parse_args(argv)
    try:
        built = build(args.tag)
    except (ImageError, binaries.BinariesMissingError, binaries.BuildError) as error:
        print(error, file=sys.stderr)
        return 1
    print(built.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
