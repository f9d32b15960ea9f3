"""Private chart sources in the test bed: Secrets, a one-chart Stack and a logging helm.

Shared by `e2e/test_private_sources.py` (the CLI matrix) and
`e2e/test_private_sources_operator.py` (the operator and the ServiceAccount read). helm
runs through a wrapper (`write_wrapper`) that logs every argv and, for each file flag
(`--registry-config`, `--repository-config`, `--ca-file`), the file's mode at that moment:
`assert_files_private_and_gone` checks the files were 0600 while helm ran and are gone.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed import faults
from e2e.testbed.helpers import kubectl

# The one chart `stack_body` deploys: all the test registries need (a push is a helm process).
CHARTS = ("app-0.1.0",)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def write_wrapper(directory: Path) -> tuple[Path, Path, Path]:
    """A `helm` logging argv (one line per call) and each file flag's mode, then exec."""
    log, modes = directory / "helm-calls.log", directory / "helm-file-modes.log"
    log.touch(mode=0o600)
    modes.touch(mode=0o600)
    real = os.environ.get("HERD_HELM") or faults.HELM
    wrapper = directory / "helm"
    wrapper.write_text(
        f"""#!/bin/sh
printf '%s\\n' "$*" >> '{log}'
for a in "$@"; do
  case "$a" in
    --registry-config=*|--repository-config=*|--ca-file=*)
      f="${{a#*=}}"
      printf '%s %s %s\\n' "$(stat -c %a "$f" 2>/dev/null || echo missing)" \\
        "$(stat -c %a "$(dirname "$f")" 2>/dev/null || echo missing)" "$f" >> '{modes}';;
  esac
done
exec '{real}' "$@"
"""
    )
    wrapper.chmod(0o700)
    return wrapper, log, modes


def file_modes(modes: Path) -> list[tuple[str, str, Path]]:
    rows = [line.split(" ", 2) for line in modes.read_text().splitlines() if line]
    return [(mode, parent, Path(path)) for mode, parent, path in rows]


def assert_files_private_and_gone(modes: Path) -> None:
    seen = file_modes(modes)
    assert seen, "no credential file was passed to helm"
    for mode, parent, path in seen:
        assert (mode, parent) == ("600", "700"), (mode, parent, path)
        assert not path.exists(), f"{path} outlived the pull"


# -- the bed ----------------------------------------------------------------------------------


def secret(name: str, namespace: str, type_: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def basic_auth(name: str, namespace: str, username: str, password: str) -> dict[str, Any]:
    return secret(
        name,
        namespace,
        "kubernetes.io/basic-auth",
        {"username": username.encode(), "password": password.encode()},
    )


def ca_secret(name: str, namespace: str, ca: Path) -> dict[str, Any]:
    return secret(name, namespace, "Opaque", {"ca.crt": ca.read_bytes()})


def apply(kubeconfig: Path, *bodies: dict[str, Any]) -> None:
    kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(bodies))


def stack_body(name: str, namespace: str, cluster: str, **chart: Any) -> dict[str, Any]:
    """A one-chart Stack: fixture chart `app` 0.1.0 as `web`, into namespace `name`."""
    web = {"name": "web", "chart": "app", "version": "0.1.0", "namespace": name, **chart}
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targets": {"clusterIds": [cluster]}, "charts": [web]},
    }
