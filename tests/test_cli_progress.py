"""Live progress: plain lines for logs, in-place redraws for terminals."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import termios

import pytest
from rich.console import Console

from herd.cli.progress import LiveProgress, PlainProgress, for_stream, progress_line
from herd.plan.decide import Action
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State


def result(
    cluster: str,
    chart: str,
    state: State,
    action: Action | None = None,
    *,
    revision: int | None = None,
    message: str = "",
) -> ReleaseResult:
    key = ReleaseKey(cluster, "default", chart)
    return ReleaseResult(key, chart, state, action, revision, message=message)


@pytest.mark.parametrize(
    ("update", "line"),
    [
        (result("c1", "db", State.PENDING), "[c1] db: Pending"),
        (
            result("c1", "db", State.DEPLOYING, Action.UPGRADE, message="values changed"),
            "[c1] db: Deploying upgrade: values changed",
        ),
        (
            result("c1", "db", State.DEPLOYED, Action.INSTALL, revision=1),
            "[c1] db: Deployed revision 1, installed",
        ),
        (
            result("c1", "db", State.DEPLOYED, Action.NOTHING, revision=7),
            "[c1] db: Deployed revision 7, unchanged",
        ),
        (
            result("c1", "db", State.FAILED, Action.INSTALL, message="timed out waiting"),
            "[c1] db: Failed timed out waiting",
        ),
        (result("c1", "db", State.UNINSTALLING, Action.UNINSTALL), "[c1] db: Uninstalling"),
        (result("c1", "db", State.UNINSTALLED, Action.UNINSTALL), "[c1] db: Uninstalled"),
    ],
)
def test_progress_line(update: ReleaseResult, line: str) -> None:
    assert progress_line(update) == line


def test_plain_progress_prints_each_change_once_and_no_pending() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)

    for update in [
        result("c1", "db", State.PENDING),
        result("c1", "db", State.DEPLOYING, Action.INSTALL, message="not installed"),
        result("c1", "db", State.DEPLOYING, Action.INSTALL, message="not installed"),
        result("c1", "db", State.DEPLOYED, Action.INSTALL, revision=1),
    ]:
        progress(update)
    progress.close()

    assert out.getvalue().splitlines() == [
        "[c1] db: Deploying install: not installed",
        "[c1] db: Deployed revision 1, installed",
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CURSOR_UP = "\x1b[1A"  # rich's Live moves up over its last frame, line by line
ERASE_LINE = "\x1b[2K"


def console(out: io.StringIO, width: int = 80, height: int = 24) -> Console:
    return Console(
        file=out, force_terminal=True, width=width, height=height, color_system="standard"
    )


def frames(text: str) -> list[list[str]]:
    """The frames a terminal showed: each redraw starts by moving up over the last one."""
    parts = re.split(r"(?:\x1b\[2K\x1b\[1A)+\x1b\[2K|\r", text)
    shown = [ANSI.sub("", part).rstrip("\n") for part in parts]
    return [[line.rstrip() for line in frame.split("\n")] for frame in shown if frame.strip()]


def test_live_progress_redraws_in_place_throttled() -> None:
    out, clock = io.StringIO(), Clock()
    progress = LiveProgress(out, console=console(out), clock=clock)

    progress(result("c1", "db", State.PENDING))
    first = out.getvalue()
    progress(result("c1", "web", State.PENDING))  # same instant: not drawn yet
    assert out.getvalue() == first
    clock.now = 1.0
    progress(result("c1", "db", State.DEPLOYING, Action.INSTALL, message="not installed"))
    progress.close()

    assert frames(first) == [["Pending: 1", "c1  db  Pending"]]
    redraws = out.getvalue()[len(first) :]
    assert CURSOR_UP in redraws and ERASE_LINE in redraws  # in place, not appended
    assert "\x1b[33m" in redraws  # Deploying and Pending in colour
    assert frames(out.getvalue())[-1] == [
        "Pending: 1  Deploying: 1",
        "c1  db   Deploying     install: not installed",
        "c1  web  Pending",
    ]


def test_live_progress_keeps_rows_needing_attention_when_the_screen_is_short() -> None:
    out = io.StringIO()
    progress = LiveProgress(out, console=console(out, width=40, height=5))
    for number in range(6):
        progress(result(f"c{number}", "db", State.DEPLOYED, Action.NOTHING, revision=1))
    progress(result("c9", "db", State.FAILED, message="x" * 100))

    assert [r.key.cluster for r in progress.chosen(4)] == ["c0", "c9"]
    progress.draw()
    progress.close()

    last = frames(out.getvalue())[-1]
    assert last[0] == "Deployed: 6  Failed: 1"
    assert last[1].startswith("c0  db  Deployed")
    assert last[2].startswith("c9  db  Failed") and last[2].endswith("…")
    assert last[3] == "… 5 more releases"
    assert all(len(line) <= 40 for line in last)


def test_live_progress_on_a_real_pseudo_terminal_redraws_and_ends_on_the_final_rows() -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    stream = os.fdopen(follower, "w")
    clock = Clock()
    assert isinstance(for_stream(stream), LiveProgress)  # a terminal: live redraws
    progress = LiveProgress(stream, clock=clock)
    for step, state in enumerate((State.PENDING, State.DEPLOYING, State.DEPLOYED)):
        clock.now = float(step)
        progress(result("edge-1", "web", state, Action.INSTALL, revision=1))
        progress(result("edge-2", "web", state, Action.INSTALL, revision=1))
    progress.close()
    stream.close()

    shown = read_all(leader)
    assert shown.count(CURSOR_UP) >= 3 * 2  # every redraw moves up over the previous frame
    assert frames(shown)[-1] == [
        "Deployed: 2",
        "edge-1  web  Deployed      revision 1, installed",
        "edge-2  web  Deployed      revision 1, installed",
    ]


def read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the follower side is closed: all read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode().replace("\r\n", "\n")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_live_redraws_and_anything_else_plain_lines() -> None:
    assert isinstance(for_stream(Terminal()), LiveProgress)
    assert isinstance(for_stream(io.StringIO()), PlainProgress)
