"""A stand-in server run as a child process, driven over its stdin and stdout.

The stand-ins (`e2e.testbed.neuvector_standin`, `e2e.testbed.dcgm_standin`) run as
`python -m e2e.testbed.<module> serve ...` through a spawner (`subprocess.Popen`, or a
network namespace's `popen`), answering one JSON object a line for each command the test
writes. End of input stops the child, so a child whose parent died stops too.
`ChildStandIn` is the test's side: `ask` a command, `stop`; `launch` starts the child.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ANSWER_SECONDS = 10.0


class StandInError(RuntimeError):
    """The child process died, did not start answering, or did not answer its driver."""


def launch(
    spawn: Callable[..., subprocess.Popen[str]], argv: Sequence[str], log: Path
) -> subprocess.Popen[str]:
    """Start `argv` with piped stdin/stdout and stderr to `log`, from the repository root."""
    with log.open("w") as stderr:
        return spawn(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            text=True, cwd=REPO,
        )  # fmt: skip


class ChildStandIn:
    what = "stand-in"

    def __init__(self, process: subprocess.Popen[str], host: str, port: int, log: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.log = log

    def stop(self) -> None:
        """End its input, so it shuts down; kill it if it does not."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=ANSWER_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def ask(self, command: Mapping[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None, "started without pipes"
        try:
            stdin.write(json.dumps(command) + "\n")
            stdin.flush()
        except OSError as error:
            raise self.failure(f"gone ({error})") from error
        if not select.select([stdout], [], [], ANSWER_SECONDS)[0]:
            raise self.failure(f"no answer to {command['op']} in {ANSWER_SECONDS:.0f}s")
        line = stdout.readline()
        if not line:
            raise self.failure(f"exited with code {self.process.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise self.failure(f"refused {command['op']}: {answer['error']}")
        return answer

    def failure(self, what: str) -> StandInError:
        return StandInError(
            f"{self.what} at {self.host}:{self.port} {what}\n"
            f"--- its log {self.log} ---\n{self.log.read_text(errors='replace')[-4000:]}"
        )
