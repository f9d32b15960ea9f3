"""The helpers every e2e module shares: `kubectl` on a bed cluster, and `eventually`.

Callers: the e2e test modules and the bed's own helpers (`herd_controller`,
`tenant_identity`, `fuzz_run`, `hostile_bed`). One copy each, so that a change of bound,
error text or polling interval is made once.

- `kubectl(target, ...)` runs kubectl and returns its stdout; a non-zero exit is an
  AssertionError with kubectl's stderr (unless `check=False`).
- `kubectl_run(target, ...)` returns the whole `CompletedProcess` and never raises on the
  exit code: for tests that assert on stderr or the exit code themselves.
- `open_crd(group, names)`: a namespaced CRD (one version, v1) whose objects take any
  fields, for tests that need a kind a cluster has and another lacks.
- `api_get(target, path)`, `get_stack(target, namespace, name)`, `object_events(...)`: a
  read through the target's kubeconfig without a kubectl process. The suite's probes poll
  every half second on two busy cores; a kubectl start costs ~0.1 s of CPU, a request ~5 ms.
- `eventually(what, probe, timeout)` polls until `probe()` is truthy. Polling, not a watch:
  the probes read through the API, helm or a log file, which have no watch of their own.

`target` is a kubeconfig path or anything with a `.kubeconfig` (a bed `Cluster`).
"""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from e2e.testbed.kube import client_for

T = TypeVar("T")
# Short enough that a wait ends soon after its event; long enough that a kubectl probe
# (a Go process start, ~0.1 s of CPU) does not load the 2-core machine the suite runs on.
POLL_SECONDS = 0.5


class _HasKubeconfig(Protocol):
    @property
    def kubeconfig(self) -> Path: ...


Target = Path | _HasKubeconfig


def _kubeconfig(target: Target) -> Path:
    return target if isinstance(target, Path) else target.kubeconfig


def kubectl_run(
    target: Target, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """kubectl on `target`'s cluster; the caller judges the exit code."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(_kubeconfig(target)), *args],
        input=stdin,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kubectl(
    target: Target,
    *args: str,
    stdin: str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> str:
    """kubectl's stdout; with `check`, a failure is an AssertionError naming the command."""
    done = kubectl_run(target, *args, stdin=stdin, timeout=timeout)
    if check and done.returncode:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def api_get(target: Target, path: str, *, check: bool = True) -> Any:
    """GET `path` (`/api/...`, `/apis/...`) as the target's kubeconfig user: the parsed
    body, None when absent (404). Another status is an AssertionError; so is an apiserver
    out of reach, unless `check=False` (then None, like `kubectl ... check=False`)."""
    try:
        response = client_for(_kubeconfig(target)).get(path)
    except (OSError, http.client.HTTPException) as error:
        if check:
            raise AssertionError(f"GET {path}: {error}") from None
        return None
    if response.status == 404:
        return None
    if response.status != 200:
        if check:
            raise AssertionError(f"GET {path}: {response.status} {response.body}")
        return None
    return response.body


def get_stack(target: Target, namespace: str, name: str, *, check: bool = True) -> dict[str, Any]:
    """The Stack as `kubectl get stack -o json` shows it; {} when there is none."""
    path = f"/apis/herd.suse.com/v1/namespaces/{namespace}/stacks/{name}"
    found: dict[str, Any] = api_get(target, path, check=check) or {}
    return found


def object_events(target: Target, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events of the objects named `name` in `namespace` (any kind)."""
    selector = quote(f"involvedObject.name={name}")
    found = api_get(target, f"/api/v1/namespaces/{namespace}/events?fieldSelector={selector}")
    items: list[dict[str, Any]] = (found or {}).get("items", [])
    return items


def eventually(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 120.0,
    interval: float = POLL_SECONDS,
) -> T:
    """The first truthy `probe()` within `timeout` seconds; AssertionError after that."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def wait_established(target: Target, *crds: str, timeout: float = 60.0) -> None:
    """Each CRD's `Established` condition True. (`kubectl wait` fails at once with
    "accessor error" when it asks a CRD so new that it has no conditions yet.)"""
    query = '-o=jsonpath={.status.conditions[?(@.type=="Established")].status}'
    for crd in crds:
        eventually(
            f"crd/{crd} to be Established",
            lambda crd=crd: kubectl_run(target, "get", f"crd/{crd}", query).stdout == "True",
            timeout,
        )


def open_crd(group: str, names: dict[str, Any]) -> dict[str, Any]:
    """A namespaced CRD of `group` (names: plural, singular, kind, ...), served at v1, any
    fields allowed."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{names['plural']}.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
