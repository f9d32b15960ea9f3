"""The test bed's exporter: `/metrics` with series whose values the tests (or a person) set.

What is real around it: a real Prometheus scrapes it (`e2e.testbed.prometheus`) and Herd
evaluates real PromQL on those scrapes. What is a stand-in: the values, which a test sets
instead of an inference server and a GPU producing them. It serves what such a workload
exposes:

- `http_requests_total{code}`: a counter per HTTP status code, growing at the request rate
  set for that code (requests per second), so `rate(...)` reads that rate back;
- `http_request_duration_seconds` (histogram, the Prometheus client's default buckets):
  every request counted above takes the latency set, so `histogram_quantile(0.95, ...)`
  lands in that latency's bucket;
- dcgm-exporter's default counters for the GPUs set, `DCGM_FI_DEV_GPU_UTIL` among them,
  rendered by the DCGM stand-in (`e2e.testbed.dcgm_standin.render`), same names and labels.

Control, on the same port (JSON; `curl` works):

    POST /values {"rates": {"200": 10, "500": 2}, "latency_seconds": 0.2,
                  "gpu_utilization": {"0": 75}, "gpus": [CannedGpu fields...]}
    GET  /values   -> the settings and the counters' current values

Each key of a POST replaces that setting only. Run: `python -m e2e.testbed.exporter serve
--host H --port P [--port-file F]`. Callers: `e2e.testbed.prometheus` (one per downstream
cluster), `e2e/demo.py`, `e2e/test_prometheus.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from e2e.testbed.dcgm_standin import CannedGpu, render

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MAX_BODY = 64 * 1024


class Workload:
    """The simulated traffic and GPUs; `advance` accrues requests up to now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rates: dict[str, float] = {}
        self.latency = 0.05
        self.gpus: list[CannedGpu] = []
        self._counts: dict[str, float] = {}
        self._buckets = [0.0] * (len(BUCKETS) + 1)  # the last one is +Inf only
        self._sum = 0.0
        self._at = time.monotonic()

    def set(self, values: Mapping[str, Any]) -> None:
        with self._lock:
            self._advance()
            if "rates" in values:
                self.rates = {str(k): max(0.0, float(v)) for k, v in values["rates"].items()}
            if "latency_seconds" in values:
                self.latency = max(0.0, float(values["latency_seconds"]))
            if "gpus" in values:
                self.gpus = [CannedGpu(**gpu) for gpu in values["gpus"]]
            if "gpu_utilization" in values:
                self.gpus = [
                    CannedGpu(int(gpu), f"GPU-herd-{int(gpu):04d}", utilization=float(util))
                    for gpu, util in sorted(values["gpu_utilization"].items())
                ]

    def state(self) -> dict[str, Any]:
        with self._lock:
            self._advance()
            return {
                "rates": self.rates,
                "latency_seconds": self.latency,
                "gpu_utilization": {str(g.gpu): g.utilization for g in self.gpus},
                "http_requests_total": {code: int(n) for code, n in self._counts.items()},
            }

    def metrics(self) -> str:
        with self._lock:
            self._advance()
            lines = [
                "# HELP http_requests_total Total HTTP requests served, by status code.",
                "# TYPE http_requests_total counter",
            ]
            lines += [
                f'http_requests_total{{code="{code}"}} {int(n)}'
                for code, n in sorted(self._counts.items())
            ]
            lines += [
                "# HELP http_request_duration_seconds HTTP request latencies in seconds.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            cumulative = 0.0
            for bound, count in zip((*BUCKETS, "+Inf"), self._buckets, strict=True):
                cumulative += count
                lines.append(
                    f'http_request_duration_seconds_bucket{{le="{bound}"}} {int(cumulative)}'
                )
            lines.append(f"http_request_duration_seconds_sum {self._sum:.6f}")
            lines.append(f"http_request_duration_seconds_count {int(cumulative)}")
            gpus = render(self.gpus) if self.gpus else ""
        return "\n".join(lines) + "\n" + gpus

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._at = now - self._at, now
        served = 0.0
        for code, rate in self.rates.items():
            self._counts[code] = self._counts.get(code, 0.0) + rate * elapsed
            served += rate * elapsed
        bucket = next((i for i, bound in enumerate(BUCKETS) if self.latency <= bound), -1)
        self._buckets[bucket] += served
        self._sum += served * self.latency


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/metrics":
            body, kind = self.server.workload.metrics().encode(), "text/plain; version=0.0.4"
        elif path == "/values":
            body, kind = json.dumps(self.server.workload.state()).encode(), "application/json"
        else:
            self.send_error(404)
            return
        self._send(200, body, kind)

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/values":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if length > _MAX_BODY:
                raise ValueError("body too large")
            values = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object")
            self.server.workload.set(values)
        except (ValueError, TypeError, AttributeError) as error:
            self._send(400, json.dumps({"error": str(error)}).encode(), "application/json")
            return
        self._send(200, json.dumps(self.server.workload.state()).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], workload: Workload) -> None:
        self.workload = workload
        super().__init__(address, _Handler)


class ExporterClient:
    """The test's side: set values on an exporter at `url` (`http://host:port`)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def set(self, **values: Any) -> dict[str, Any]:
        """`rates={"500": 2}`, `latency_seconds=0.3`, `gpu_utilization={"0": 80}`, `gpus=[...]`."""
        request = urllib.request.Request(
            f"{self.url}/values",
            data=json.dumps(values).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            state: dict[str, Any] = json.loads(answer.read())
        return state

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/values", timeout=10) as answer:
            state: dict[str, Any] = json.loads(answer.read())
        return state


def serve(host: str, port: int) -> _Server:
    server = _Server((host, port), Workload())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.exporter")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="serve /metrics and /values until killed")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=0)
    run.add_argument("--port-file", type=Path, help="write the port here once listening")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port)
    if args.port_file:
        partial = args.port_file.with_name(args.port_file.name + ".part")
        partial.write_text(str(server.server_address[1]))
        partial.rename(args.port_file)  # readers never see a half-written port
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
