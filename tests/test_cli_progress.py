"""Live progress: plain lines for logs, in-place redraws for terminals."""

from __future__ import annotations

import io

import pytest

from herd.cli.progress import LiveProgress, PlainProgress, for_stream, progress_line
from herd.plan import Action, ReleaseKey
from herd.results import ReleaseResult, State


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


def test_live_progress_redraws_in_place_throttled() -> None:
    out, clock = io.StringIO(), Clock()
    progress = LiveProgress(out, size=lambda: (80, 24), clock=clock)

    progress(result("c1", "db", State.PENDING))
    first = out.getvalue()
    progress(result("c1", "web", State.PENDING))  # same instant: not drawn yet
    assert out.getvalue() == first
    clock.now = 1.0
    progress(result("c1", "db", State.DEPLOYING, Action.INSTALL, message="not installed"))
    progress.close()

    assert first == "\x1b[JPending: 1\nc1  db  Pending\n"
    redraws = out.getvalue()[len(first) :]
    # Each redraw moves up over the previous block, clears, and draws every row.
    assert redraws.startswith("\x1b[2F\x1b[J")
    assert redraws.endswith(
        "\x1b[3F\x1b[JPending: 1  Deploying: 1\n"
        "c1  db   Deploying     install: not installed\n"
        "c1  web  Pending\n"
    )


def test_live_progress_keeps_rows_needing_attention_when_the_screen_is_short() -> None:
    out = io.StringIO()
    progress = LiveProgress(out, size=lambda: (40, 5))
    for number in range(6):
        progress(result(f"c{number}", "db", State.DEPLOYED, Action.NOTHING, revision=1))
    progress(result("c9", "db", State.FAILED, message="x" * 100))

    lines = progress.lines(4)

    assert lines[0] == "Deployed: 6  Failed: 1"
    assert lines[1].startswith("c0  db  Deployed")
    assert lines[2].startswith("c9  db  Failed")
    assert lines[3] == "… 5 more releases"
    progress.draw()
    assert all(len(line) <= 39 for line in out.getvalue().splitlines())


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_live_redraws_and_anything_else_plain_lines() -> None:
    assert isinstance(for_stream(Terminal()), LiveProgress)
    assert isinstance(for_stream(io.StringIO()), PlainProgress)
