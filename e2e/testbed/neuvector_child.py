"""The NeuVector stand-in (`e2e.testbed.neuvector_standin`) as a child process.

Callers: `e2e/test_addons.py`, `e2e/test_checks.py` and `e2e.testbed.neuvector_demo`
reach the stand-in through a downstream cluster's API server service proxy. The API
server refuses loopback endpoints (Endpoints validation), so for the proxy the server runs
as a child process in a network namespace of the test's own (`e2e.testbed.netns`),
started by `served()`:

    python -m e2e.testbed.neuvector_child serve --host ADDR --port P \
        --password-file FILE [--images FILE]

`--images` is a JSON list of `CannedImage` fields. The child is driven over its stdin
and stdout, one JSON object a line each way: `{"op": "state"}` answers the request log
and the number of open sessions, `{"op": "add_image", "image": {...}}` adds a finished
scan, `{"op": "rescan_image", ...}` replaces an image's scan. End of input stops the
server; so a child whose parent died stops too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from e2e.testbed.neuvector_standin import CannedImage, NeuVectorStandIn, Request
from e2e.testbed.standin_child import ChildStandIn, launch


class StandInProcess(ChildStandIn):
    """A stand-in served by a child process; the test's view of it, as of one in process."""

    what = "NeuVector stand-in"

    @property
    def requests(self) -> list[Request]:
        return [Request(**request) for request in self.ask({"op": "state"})["requests"]]

    @property
    def open_sessions(self) -> int:
        return int(self.ask({"op": "state"})["open_sessions"])

    def add_image(self, image: CannedImage) -> None:
        self.ask({"op": "add_image", "image": dataclasses.asdict(image)})

    def rescan_image(self, image: CannedImage) -> None:
        self.ask({"op": "rescan_image", "image": dataclasses.asdict(image)})

    def wait_until_answering(self, timeout: float) -> None:
        """Poll with a TLS handshake (no request, so the log stays clean) until it answers."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # any certificate: this only asks "up yet?"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise self.failure(f"exited with code {self.process.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    context.wrap_socket(sock).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise self.failure(f"not answering after {timeout:.0f}s") from None
                time.sleep(0.1)


@contextlib.contextmanager
def served(
    spawn: Callable[..., subprocess.Popen[str]],
    *,
    host: str,
    port: int,
    password: str,
    images: Sequence[CannedImage],
    workdir: Path,
    timeout: float = 30.0,
) -> Iterator[StandInProcess]:
    """Run `serve` through `spawn` (`subprocess.Popen`, or a namespace's), until exit.

    The password goes in a file of mode 0600, never on a command line (`ps` shows those).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "password"
    password_file.touch(mode=0o600)
    password_file.write_text(password)
    images_file = workdir / "images.json"
    images_file.write_text(json.dumps([dataclasses.asdict(image) for image in images]))
    log = workdir / "standin.log"
    argv = [
        sys.executable, "-m", "e2e.testbed.neuvector_child", "serve",
        "--host", host, "--port", str(port),
        "--password-file", str(password_file), "--images", str(images_file),
    ]  # fmt: skip
    standin = StandInProcess(launch(spawn, argv, log), host, port, log)
    try:
        standin.wait_until_answering(timeout)
        yield standin
    finally:
        standin.stop()


def _drive(standin: NeuVectorStandIn, commands: TextIO, answers: TextIO) -> None:
    """Answer the driver's commands, one JSON object a line, until its input ends."""
    for line in commands:
        command = json.loads(line)
        answer: dict[str, Any]
        if command.get("op") == "state":
            answer = {
                "requests": [dataclasses.asdict(request) for request in standin.requests],
                "open_sessions": standin.open_sessions,
            }
        elif command.get("op") == "add_image":
            standin.add_image(CannedImage(**command["image"]))
            answer = {}
        elif command.get("op") == "rescan_image":
            standin.rescan_image(CannedImage(**command["image"]))
            answer = {}
        else:
            answer = {"error": f"unknown op {command.get('op')!r}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.testbed.neuvector_child",
        description="Serve the NeuVector REST stand-in over HTTPS until stdin ends.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve; driven over stdin and stdout")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=10443)
    serve.add_argument("--username", default="admin")
    serve.add_argument("--password-file", type=Path, required=True)
    serve.add_argument("--images", type=Path, help="JSON list of CannedImage fields")
    args = parser.parse_args(argv)
    images = json.loads(args.images.read_text()) if args.images else []
    standin = NeuVectorStandIn(
        username=args.username,
        password=args.password_file.read_text(),
        images=[CannedImage(**image) for image in images],
    )
    with standin.start(host=args.host, port=args.port):
        _drive(standin, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
