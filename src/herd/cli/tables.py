"""The CLI's tables: `Grid` (headers and cells), plain text for pipes and logs, a `rich`
Table on a terminal, states in colour (`STATE_STYLES`). `rich` is imported only to draw
on a terminal: a pipeline's `herd apply` (stdout a pipe or file) never loads it.

A row type lists the attributes it shows in `Row.COLUMNS`; its headers are their names.

Callers: `herd.cli.render` (the rows of each command), `herd.cli.progress` (the live view).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TextIO

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

MISSING = "-"


class Row:
    """A table row: `COLUMNS` are the attributes shown, in order; the headers name them."""

    COLUMNS: ClassVar[tuple[str, ...]]

    @classmethod
    def headers(cls) -> tuple[str, ...]:
        return tuple(column.upper() for column in cls.COLUMNS)

    def cells(self) -> tuple[object, ...]:
        return tuple(getattr(self, column) for column in self.COLUMNS)


def cell(value: object) -> str:
    return MISSING if value is None or value == "" else str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    lines = [list(headers), *([cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers) - 1)]
    return "\n".join(
        "  ".join(
            [*(text.ljust(w) for text, w in zip(line, widths, strict=False)), line[-1]]
        ).rstrip()
        for line in lines
    )


_GOOD = "green"
_BAD = "bold red"
_BUSY = "yellow"
STATE_STYLES: Mapping[str, str] = {
    **dict.fromkeys(("Deployed", "Uninstalled", "deployed", "unchanged"), _GOOD),
    **dict.fromkeys(("Failed", "Unreachable", "failed", "conflict"), _BAD),
    **dict.fromkeys(("Skipped", "NotGranted"), "magenta"),
    **dict.fromkeys(("Pending", "Deploying", "Uninstalling"), _BUSY),
    **dict.fromkeys(("install", "upgrade", "recover", "uninstall"), "cyan"),
}


@dataclass(frozen=True)
class Grid:
    """A table's headers and cells. `str()` is the plain text; `rich` renders a Table, the
    cells of the `STATUS`/`ACTION` column styled by `STATE_STYLES`."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> Grid:
        return cls(tuple(headers), tuple(tuple(cell(v) for v in row) for row in rows))

    def __str__(self) -> str:
        return table(self.headers, self.rows)

    def __rich__(self) -> Table:
        from rich import box  # noqa: PLC0415 (a terminal only: see the module)
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        # Laid out as the plain text is (two spaces apart, no edges), a rule under the
        # headers; the last column (helm's message, a plan's detail) folds, never cut.
        grid = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
            header_style="bold",
        )
        last = len(self.headers) - 1
        for i, header in enumerate(self.headers):
            grid.add_column(header, overflow="fold" if i == last else "ellipsis")
        styled = {i for i, h in enumerate(self.headers) if h in ("STATUS", "ACTION")}
        for row in self.rows:
            grid.add_row(
                *(
                    Text(v, style=STATE_STYLES.get(v, "") if i in styled else "")
                    for i, v in enumerate(row)
                )
            )
        return grid


def terminal(stream: TextIO) -> Console:
    """A rich Console on `stream` that prints text as it is (no markup, no highlighting:
    helm's messages may hold brackets)."""
    from rich.console import Console  # noqa: PLC0415 (a terminal only: see the module)

    return Console(file=stream, markup=False, highlight=False, emoji=False)


def write_result(stream: TextIO, grid: Grid, notes: Sequence[str], text: str) -> None:
    """The table, the notes and the summary: a rich Table on a terminal, else plain text."""
    if not stream.isatty():
        print(grid, file=stream)
        print(file=stream)
        for note in notes:
            print(note, file=stream)
        print(text, file=stream)
        return
    from rich.text import Text  # noqa: PLC0415 (a terminal only: see the module)

    console = terminal(stream)
    console.print(grid)
    console.print()
    for note in notes:
        console.print(Text(note, style="yellow"))
    console.print(Text(text, style="bold"))
