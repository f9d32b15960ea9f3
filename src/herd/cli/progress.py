"""Live progress of `herd apply` and `herd delete`, fed by the rollout's `on_progress`.

Two faces: on a terminal, `LiveProgress` redraws one line per cluster × chart in place
(a `rich` Live view, throttled, busy and failing rows kept visible when the fleet is
taller than the screen); anywhere else, `PlainProgress` writes one line per state change
(`[cluster] chart: State message`), which reads well in CI logs. Both write to stderr,
so stdout holds only the final table or JSON document. `rich` is imported by the live
view only (`herd.cli.tables`: a pipeline never loads it).

Callers: `herd.cli.fleet`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TextIO

from herd.cli.render import result_message
from herd.cli.tables import STATE_STYLES, terminal
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.live import Live

REDRAW_SECONDS = 0.1

_ATTENTION = {
    State.FAILED: 0,
    State.UNREACHABLE: 0,
    State.SKIPPED: 0,
    State.NOT_GRANTED: 0,
    State.DEPLOYING: 1,
    State.UNINSTALLING: 1,
    State.PENDING: 2,
    State.DEPLOYED: 3,
    State.UNINSTALLED: 3,
}


class Progress(Protocol):
    def __call__(self, result: ReleaseResult) -> None: ...

    def close(self) -> None: ...


def progress_line(result: ReleaseResult) -> str:
    """`[cluster] chart: State message`, the message saying why or what happened."""
    detail = result_message(result)
    if result.state is State.DEPLOYING and result.action:
        detail = f"{result.action.value}: {detail}" if detail else result.action.value
    if result.state is State.DEPLOYED and result.revision is not None:
        detail = f"revision {result.revision}" + (f", {detail}" if detail else "")
    text = f"[{result.key.cluster}] {result.chart}: {result.state.value}"
    return f"{text} {detail}" if detail else text


class PlainProgress:
    """One line per state change; `Pending` is left out (every release starts there)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last: dict[ReleaseKey, str] = {}

    def __call__(self, result: ReleaseResult) -> None:
        if result.state is State.PENDING:
            return
        line = progress_line(result)
        if self._last.get(result.key) != line:
            self._last[result.key] = line
            print(line, file=self._stream, flush=True)

    def close(self) -> None:
        pass


class LiveProgress:
    """A `rich` Live view redrawn in place; `close()` draws the final state and leaves it.

    Redraws are throttled (at most one per `REDRAW_SECONDS`, on the caller's clock) and
    made by the caller, not a refresh thread, so a run's output is what its updates say.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console or terminal(stream)
        self._clock = clock
        self._results: dict[ReleaseKey, ReleaseResult] = {}
        self._last_draw: float | None = None
        self._live: Live | None = None

    def __call__(self, result: ReleaseResult) -> None:
        self._results[result.key] = result
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= REDRAW_SECONDS:
            self._last_draw = now
            self.draw()

    def close(self) -> None:
        if self._results:
            self.draw()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def draw(self) -> None:
        size = self._console.size
        view = self.view(max(size.height - 1, 3), size.width)
        if self._live is None:
            from rich.live import Live  # noqa: PLC0415 (a terminal only: see the module)

            self._live = Live(
                view,
                console=self._console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="crop",
            )
            self._live.start(refresh=True)
        else:
            self._live.update(view, refresh=True)

    def view(self, height: int, width: int) -> Group:
        """The counts header, then one row per release (`chosen`), then how many are hidden."""
        from rich.console import Group  # noqa: PLC0415 (a terminal only: see the module)
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        results = list(self._results.values())
        counts = Counter(r.state for r in results)
        header = Text()
        for state in (s for s in State if counts[s]):
            if header:
                header.append("  ")
            header.append(f"{state.value}: {counts[state]}", style=STATE_STYLES.get(state.value))
        # Names and states keep their width; a long message is cut, ending in "…".
        names = [max(len(r.key.cluster) for r in results), max(len(r.chart) for r in results)]
        rows = Table.grid(padding=(0, 2))
        for name_width in names:
            rows.add_column(no_wrap=True, min_width=name_width)
        rows.add_column(no_wrap=True, min_width=12)
        detail = max(width - sum(names) - 12 - 3 * 2, 10)
        rows.add_column(no_wrap=True, overflow="ellipsis", max_width=detail)
        chosen = self.chosen(height)
        for r in chosen:
            shown = Text(r.state.value, style=STATE_STYLES.get(r.state.value, ""))
            rows.add_row(r.key.cluster, r.chart, shown, _detail(r))
        hidden = len(results) - len(chosen)
        more = [Text(f"… {hidden} more releases", style="dim")] if hidden else []
        return Group(header, rows, *more)

    def chosen(self, height: int) -> list[ReleaseResult]:
        """The rows that fit below the header; if too many, the ones needing attention."""
        results = list(self._results.values())
        chosen = results
        if len(results) + 1 > height:
            keep = height - 2  # header and the "more" line
            ranked = sorted(enumerate(results), key=lambda pair: _ATTENTION[pair[1].state])
            chosen = [r for _, r in sorted(ranked[:keep], key=lambda pair: pair[0])]
        return sorted(chosen, key=lambda r: r.key.cluster)  # stable: wave order kept


def _detail(result: ReleaseResult) -> str:
    line = progress_line(result)
    prefix = f"[{result.key.cluster}] {result.chart}: {result.state.value}"
    return line[len(prefix) :].strip()


def for_stream(stream: TextIO) -> Progress:
    """Live redraws on a terminal, plain lines otherwise (CI logs, pipes, files)."""
    if stream.isatty():
        return LiveProgress(stream)
    return PlainProgress(stream)
