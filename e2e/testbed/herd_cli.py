"""`herd` as a CI pipeline runs it: the installed CLI as a subprocess, Stack files, helm.

Shared by the CLI's e2e modules (`e2e/test_cli*.py`, `test_cluster_values.py`,
`test_crd_policy.py`): `herd` runs the CLI, `write_stack`/`chart` write a Stack of fixture
charts, `table` reads the table it prints, `releases` is `helm list` on a cluster. The
fixtures are named with `name=`, so a module imports them once (`# noqa: F401`) without
its tests' parameters shadowing the import: `helm_home` (a private helm home),
`recording_helm` (env running helm through a wrapper that logs each call; and the log) and
`cleanup` (`herd delete` at teardown for each Stack registered).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed.chartrepo import helm_binary, helm_env, helm_list_all
from e2e.testbed.controlplane import Cluster

HERD = Path(sys.executable).parent / "herd"
TIMEOUT = 300


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def chart(name: str, repo: str, namespace: str, **fields: Any) -> dict[str, Any]:
    base = {"name": name, "chart": "app", "repo": repo, "version": "0.1.0", "namespace": namespace}
    return base | fields


def write_stack(path: Path, name: str, targets: dict[str, Any], *charts: dict[str, Any]) -> Path:
    body = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {"targets": targets, "charts": list(charts)},
    }
    path.write_text(yaml.safe_dump(body))
    return path


def herd(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HERD), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
    )


def table(stdout: str) -> list[dict[str, str]]:
    """The rows of the table `herd` prints first (cells cut at the headers' columns)."""
    lines = stdout.split("\n\n", 1)[0].splitlines()
    header = lines[0]
    names = header.split()
    starts = [header.index(f"{name}") for name in names]
    ends = [*starts[1:], None]
    columns = list(zip(names, starts, ends, strict=True))
    return [{name: line[start:end].strip() for name, start, end in columns} for line in lines[1:]]


def releases(cluster: Cluster, namespace: str, home: Path) -> dict[str, dict[str, Any]]:
    """`helm list` (every status) in `namespace`: release name → helm's record."""
    result = subprocess.run(
        [
            helm_binary(),
            *helm_list_all(),
            *("--namespace", namespace, "--output", "json"),
            *("--kubeconfig", str(cluster.kubeconfig)),
        ],
        env=helm_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    return {r["name"]: r for r in json.loads(result.stdout)}


@pytest.fixture(name="helm_home")
def helm_home_fixture(tmp_path: Path) -> Path:
    return tmp_path / "helm-home"


@pytest.fixture(name="recording_helm")
def recording_helm_fixture(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Env making Herd run helm through a wrapper that logs each call; and the log."""
    log = tmp_path / "helm-calls.log"
    log.touch()
    wrapper = tmp_path / "helm"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{helm_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    return {"HERD_HELM": str(wrapper)}, log


@pytest.fixture(name="cleanup")
def cleanup_fixture() -> Iterator[Callable[[Path, list[str]], None]]:
    """Register (stack file, cluster args); `herd delete` runs for each at teardown."""
    registered: list[tuple[Path, list[str]]] = []
    yield lambda stack, clusters: registered.append((stack, clusters))
    for stack, clusters in registered:
        done = herd("delete", "-f", stack, *clusters)
        assert done.returncode == 0, done.stdout + done.stderr
