"""The final table: plain columns, byte for byte, off a terminal; a rich Table on one."""

from __future__ import annotations

import io
import re

from herd.cli import render, tables
from herd.plan.decide import Action
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def rows() -> list[render.ReleaseRow]:
    results = [
        ReleaseResult(ReleaseKey("edge-1", "ai", "web"), "web", State.DEPLOYED, Action.INSTALL, 1),
        ReleaseResult(
            ReleaseKey("edge-2", "ai", "web"),
            "web",
            State.FAILED,
            Action.UPGRADE,
            3,
            "1.2.0",
            "[x] timed out",
        ),
    ]
    return [
        render.ReleaseRow(
            cluster=r.key.cluster,
            chart=r.chart,
            release=r.key.name,
            namespace=r.key.namespace,
            status=r.state.value,
            revision=r.revision,
            version=r.chart_version,
            action=r.action.value if r.action else None,
            message=render.result_message(r),
        )
        for r in results
    ]


# The bytes `herd apply` printed before the table moved to rich (captured from that code).
PLAIN = (
    "CLUSTER  CHART  RELEASE  NAMESPACE  STATUS    REVISION  VERSION  MESSAGE\n"
    "edge-1   web    web      ai         Deployed  1         -        installed\n"
    "edge-2   web    web      ai         Failed    3         1.2.0    [x] timed out\n"
    "\n"
    "skipped cluster edge-3: no kubeconfig\n"
    "1 of 2 releases not deployed\n"
)


def test_off_a_terminal_the_output_is_the_plain_text_as_before() -> None:
    out = io.StringIO()

    tables.write_result(
        out,
        render.release_grid(rows()),
        ["skipped cluster edge-3: no kubeconfig"],
        "1 of 2 releases not deployed",
    )

    assert out.getvalue() == PLAIN
    assert render.release_table(rows()) == PLAIN.split("\n\n", 1)[0]


def test_on_a_terminal_the_table_is_a_rich_table_with_every_row() -> None:
    out = Terminal()

    tables.write_result(
        out, render.release_grid(rows()), ["a note"], "1 of 2 releases not deployed"
    )

    shown = out.getvalue()
    assert shown != PLAIN and "\x1b[" in shown  # styled: states in colour, headers bold
    assert "\x1b[1;31mFailed" in shown and "\x1b[32mDeployed" in shown
    lines = [line.rstrip() for line in ANSI.sub("", shown).splitlines()]
    assert lines[0].split() == list(render.ReleaseRow.headers())
    assert set(lines[1]) == {"─"}  # the rule under the headers
    assert lines[2].split() == ["edge-1", "web", "web", "ai", "Deployed", "1", "-", "installed"]
    # Brackets in helm's messages are text, not markup.
    assert lines[3].split() == [
        "edge-2",
        "web",
        "web",
        "ai",
        "Failed",
        "3",
        "1.2.0",
        "[x]",
        "timed",
        "out",
    ]
    assert "a note" in lines and lines[-1] == "1 of 2 releases not deployed"
