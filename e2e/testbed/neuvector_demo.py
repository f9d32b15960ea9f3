"""The NeuVector stand-in of `make demo`, kept running until `make demo-down`.

Caller: `e2e/demo.py`, which starts it as a recorded process (`.demo/pids`):

    python -m e2e.testbed.neuvector_demo --dir DIR --password-file FILE --info-file FILE

As in `e2e/test_addons.py`, the stand-in (`e2e.testbed.neuvector_standin`) runs in a
network namespace of its own (`e2e.testbed.netns`), because the downstream API servers'
service proxy, through which Herd reads scans, refuses loopback endpoints. This process
owns that namespace: on SIGTERM (`make demo-down`) it stops the stand-in and deletes the
namespace and its veth pair. Every fixture chart's image is scanned clean at start; a
small HTTP control server on loopback changes one image's scan, so a user can make an
image "vulnerable" and watch `checks.security` hold a canary:

    curl -d '{"image": "registry.example.com/herd/with-test:0.1.0", "critical": 1}' \\
        $HERD_DEMO_NEUVECTOR/images

The info file (JSON, written once serving) says `address`, `port` (the stand-in's, inside
the namespace) and `control` (the control URL); or `unavailable` (why no namespace could
be made: the demo then skips the scans and says so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from e2e.testbed import fixture_charts, netns
from e2e.testbed.neuvector_child import StandInProcess, served
from e2e.testbed.neuvector_standin import CannedImage

PORT = 10443  # NeuVector's own; the namespace is fresh, so it is free
SERVICE = "herd-nv-standin"  # the Service `expose` makes in NeuVector's namespace
API_SERVICE = f"https:{SERVICE}:{PORT}"  # the add-on ConfigMap's neuvector.apiService


def clean_images() -> list[CannedImage]:
    """A clean scan of every image the fixture charts run (their `registry.example.com`
    names, as `workload`, `app` and `with-test` render them, and the `core` stand-in's
    NeuVector controller)."""
    images = {
        f"registry.example.com/herd/{chart.name}:{chart.app_version}"
        for chart in fixture_charts.CATALOG
    }
    core = fixture_charts.find("core", "2.8.6")
    images.add(f"registry.example.com/neuvector/controller:{core.app_version}")
    return [CannedImage(image) for image in sorted(images)]


class _Control(BaseHTTPRequestHandler):
    """`POST /images` with `CannedImage` fields: that image's scan is now this one."""

    server: _ControlServer

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/images":
            self._answer(404, {"error": "POST /images only"})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            image = CannedImage(**body)
        except (ValueError, TypeError) as error:
            self._answer(400, {"error": f"want CannedImage fields: {error}"})
            return
        self.server.standin.rescan_image(image)
        self._answer(200, {"scanned": body})

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _ControlServer(HTTPServer):
    # One request at a time: the stand-in child is driven over one pipe.
    def __init__(self, standin: StandInProcess) -> None:
        super().__init__(("127.0.0.1", 0), _Control)
        self.standin = standin


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # unwinds the context managers: stand-in, then namespace


def _write_info(info_file: Path, info: dict[str, Any]) -> None:
    """Whole or not at all: the demo reads the file as soon as it appears."""
    partial = info_file.with_suffix(".partial")
    partial.write_text(json.dumps(info))
    partial.replace(info_file)


def serve(workdir: Path, password: str, info_file: Path) -> int:
    signal.signal(signal.SIGTERM, _stop)
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(netns.netns_host("herd-demo-nv"))
        except netns.NetnsUnavailable as error:
            _write_info(info_file, {"unavailable": str(error)})
            return 3
        standin = stack.enter_context(
            served(
                host.popen,
                host=host.address,
                port=PORT,
                password=password,
                images=clean_images(),
                workdir=workdir,
            )
        )
        control = _ControlServer(standin)
        url = f"http://127.0.0.1:{control.server_address[1]}"
        _write_info(info_file, {"address": host.address, "port": PORT, "control": url})
        print(f"NeuVector stand-in at {host.address}:{PORT}, control {url}", flush=True)
        control.serve_forever()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.neuvector_demo")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--info-file", type=Path, required=True)
    args = parser.parse_args(argv)
    return serve(args.dir, args.password_file.read_text(), args.info_file)


if __name__ == "__main__":
    sys.exit(main())
