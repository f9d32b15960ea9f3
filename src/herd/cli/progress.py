"""Live progress of `herd apply` and `herd delete`, fed by the rollout's `on_progress`.

Two faces: on a terminal, `LiveProgress` redraws one line per cluster × chart in place
(ANSI cursor movement, throttled, busy and failing rows kept visible when the fleet is
taller than the screen); anywhere else, `PlainProgress` writes one line per state change
(`[cluster] chart: State message`), which reads well in CI logs. Both write to stderr,
so stdout holds only the final table or JSON document.

Callers: `herd.cli.fleet`.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol, TextIO

from herd.cli.render import result_message
from herd.plan import ReleaseKey
from herd.results import ReleaseResult, State

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
    """A block of lines redrawn in place; `close()` draws the final state and leaves it."""

    def __init__(
        self,
        stream: TextIO,
        *,
        size: Callable[[], tuple[int, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._size = size or _terminal_size
        self._clock = clock
        self._results: dict[ReleaseKey, ReleaseResult] = {}
        self._drawn = 0
        self._last_draw: float | None = None

    def __call__(self, result: ReleaseResult) -> None:
        self._results[result.key] = result
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= REDRAW_SECONDS:
            self._last_draw = now
            self.draw()

    def close(self) -> None:
        if self._results:
            self.draw()

    def draw(self) -> None:
        width, height = self._size()
        lines = [line[: max(width - 1, 10)] for line in self.lines(max(height - 1, 3))]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._stream.write(up + "\x1b[J" + "".join(f"{line}\n" for line in lines))
        self._stream.flush()
        self._drawn = len(lines)

    def lines(self, height: int) -> list[str]:
        """A counts header, then rows; if too many, the ones needing attention first."""
        results = list(self._results.values())
        counts = Counter(r.state for r in results)
        header = "  ".join(f"{state.value}: {counts[state]}" for state in State if counts[state])
        cluster_width = max(len(r.key.cluster) for r in results)
        chart_width = max(len(r.chart) for r in results)
        chosen = results
        if len(results) + 1 > height:
            keep = height - 2  # header and the "more" line
            ranked = sorted(enumerate(results), key=lambda pair: _ATTENTION[pair[1].state])
            chosen = [r for _, r in sorted(ranked[:keep], key=lambda pair: pair[0])]
        chosen = sorted(chosen, key=lambda r: r.key.cluster)  # stable: wave order kept
        rows = [
            f"{r.key.cluster.ljust(cluster_width)}  {r.chart.ljust(chart_width)}  "
            f"{r.state.value.ljust(12)}  {_detail(r)}".rstrip()
            for r in chosen
        ]
        hidden = len(results) - len(chosen)
        more = [f"… {hidden} more releases"] if hidden else []
        return [header, *rows, *more]


def _detail(result: ReleaseResult) -> str:
    line = progress_line(result)
    prefix = f"[{result.key.cluster}] {result.chart}: {result.state.value}"
    return line[len(prefix) :].strip()


def _terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size()
    return size.columns, size.lines


def for_stream(stream: TextIO) -> Progress:
    """Live redraws on a terminal, plain lines otherwise (CI logs, pipes, files)."""
    if stream.isatty():
        return LiveProgress(stream)
    return PlainProgress(stream)
