"""`herd apply` on a real pseudo-terminal: the live view redraws in place and the final table
is rich's, with every row. (Off a terminal the output is plain: `e2e.test_cli`.)"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

from e2e.testbed.controlplane import Cluster
from e2e.testbed.herd_cli import (
    HERD,
    TIMEOUT,
    chart,
    cleanup_fixture,  # noqa: F401  (fixture)
    unique,
    write_stack,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_terminal(*args: str | Path, columns: int = 120) -> tuple[int, str]:
    """Run `herd` with stdin, stdout and stderr on one pseudo-terminal; its exit code and
    everything the terminal received."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [str(HERD), *map(str, args)], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if select.select([leader], [], [], 0.2)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # every writer closed: the process is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    os.close(leader)
    code = process.wait(timeout=30)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def test_apply_on_a_terminal_shows_a_live_view_and_a_rich_table(
    downstream: list[Cluster],
    chart_repo_url: str,
    tmp_path: Path,
    cleanup: Callable[[Path, list[str]], None],
) -> None:
    ns = unique("cli-tty")
    stack = write_stack(
        tmp_path / "stack.yaml",
        ns,
        {"clusterIds": ["one"]},
        chart("web", chart_repo_url, ns),
        chart("api", chart_repo_url, ns, dependsOn=["web"]),
    )
    clusters = ["--kubeconfig", f"{downstream[0].kubeconfig}=one"]
    cleanup(stack, clusters)

    code, shown = on_terminal("apply", "-f", stack, *clusters)

    assert code == 0, shown
    assert "\x1b[1A\x1b[2K" in shown  # the live view moved up over its last frame
    assert "\x1b[32m" in shown  # Deployed in green
    assert "[one] web:" not in shown  # no plain progress lines on a terminal
    lines = [line.rstrip() for line in ANSI.sub("", shown).split("\n")]
    header = next(i for i, line in enumerate(lines) if line.startswith("CLUSTER  CHART"))
    assert set(lines[header + 1]) == {"─"}  # rich's rule under the headers
    assert [line.split()[:5] for line in lines[header + 2 : header + 4]] == [
        ["one", "web", "web", ns, "Deployed"],
        ["one", "api", "api", ns, "Deployed"],
    ]
    assert "All 2 releases deployed on 1 clusters" in lines, shown
