"""`herd apply`'s fixed costs on the test bed: what starts when, and what never starts.

- A release that needs helm has its chart pulled while its dependencies install (the pass's
  observation decides; `herd.rollout.scheduler`), not after them.
- A pass with nothing to do starts no helm process, not even `helm version`.

The recording `helm` wrapper of `e2e.test_cli` logs every helm process Herd starts, in
the order they start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from e2e.testbed.controlplane import Cluster
from e2e.testbed.herd_cli import (
    chart,
    cleanup_fixture,  # noqa: F401  (fixture)
    herd,
    recording_helm_fixture,  # noqa: F401  (fixture)
    unique,
    write_stack,
)


def started(log: Path) -> list[str]:
    """The helm commands started, in order: `pull <version>`, `upgrade <release>`, ..."""
    out = []
    for line in log.read_text().splitlines():
        words = line.split()
        if words[:1] == ["pull"]:
            out.append(f"pull {next(w for w in words if w.startswith('--version='))[10:]}")
        elif words[:2] == ["upgrade", "--install"]:
            out.append(f"upgrade {words[words.index('--') + 1]}")
        else:
            out.append(words[0] if words else "")
    return out


def test_a_dependents_chart_is_pulled_while_its_dependency_installs_and_a_no_op_runs_no_helm(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    recording_helm: tuple[dict[str, str], Path],
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    env, log = recording_helm
    ns = unique("cli-costs")
    stack = write_stack(
        tmp_path / "stack.yaml",
        ns,
        {"clusterIds": ["one"]},
        chart("first", chart_repo_url, ns, wait=True),
        chart("second", chart_repo_url, ns, version="0.2.0", dependsOn=["first"]),
    )
    clusters = ["--kubeconfig", f"{downstream[0].kubeconfig}=one"]
    cleanup(stack, clusters)

    done = herd("apply", "-f", stack, *clusters, env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    calls = started(log)
    assert calls.index("pull 0.2.0") < calls.index("upgrade first"), calls
    assert calls.index("upgrade first") < calls.index("upgrade second"), calls
    assert sorted(c for c in calls if c != "version") == [
        "pull 0.1.0", "pull 0.2.0", "upgrade first", "upgrade second",
    ]  # fmt: skip

    log.write_text("")
    again = herd("apply", "-f", stack, *clusters, env=env)

    assert again.returncode == 0, again.stdout + again.stderr
    assert log.read_text() == ""  # nothing to do: no helm process at all
