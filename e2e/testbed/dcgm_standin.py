"""A stand-in for NVIDIA dcgm-exporter: `/metrics` in its text format, canned GPUs.

dcgm-exporter needs real GPUs and DCGM, so this small HTTP server serves what the real
one does with its default counters (`NVIDIA/dcgm-exporter` `etc/default-counters.csv`:
the same fields, Prometheus types and help texts) and its Kubernetes pod mapping: one
sample per GPU and counter, labelled `gpu`, `UUID`, `pci_bus_id`, `device`,
`modelName`, `Hostname`, and, for a GPU a pod holds, `container`, `namespace`, `pod`
(empty for an idle GPU). `GET /metrics` only; anything else is 404.

Callers: `tests/test_dcgm_contract.py` (in process, straight to the server on loopback)
and `e2e/test_gpu.py` (through a downstream cluster's API server service proxy: the
server then runs as a child in a network namespace of the test's own, as the NeuVector
stand-in does, see `e2e.testbed.neuvector_standin`), started by `served()`:

    python -m e2e.testbed.dcgm_standin serve --host ADDR --port P

The child is driven over stdin/stdout, one JSON object a line each way: `{"op": "set",
"gpus": [CannedGpu fields...]}` replaces the GPUs, `{"op": "state"}` answers how many
`/metrics` requests it served. End of input stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from e2e.testbed.standin_child import ChildStandIn, launch

# (field, type, help) of dcgm-exporter's default counters, in its order.
DEFAULT_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
    ),
    (
        "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
        "counter",
        "Total number of bytes transmitted through PCIe TX (in KB) via NVML.",
    ),
    (
        "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
        "counter",
        "Total number of bytes received through PCIe RX (in KB) via NVML.",
    ),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    (
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "counter",
        "Total number of NVLink bandwidth counters for all lanes",
    ),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge", "vGPU License status"),
    (
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for uncorrectable errors",
    ),
    (
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "counter",
        "Number of remapped rows for correctable errors",
    ),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
)
_FB_TOTAL_MIB = 15360  # a Tesla T4


@dataclass(frozen=True)
class CannedGpu:
    """One GPU of one node; `pod` empty when no pod holds it."""

    gpu: int
    uuid: str
    hostname: str = "gpu-node-1"
    model: str = "Tesla T4"
    utilization: float = 0.0
    fb_used: int = 0
    namespace: str = ""
    pod: str = ""
    container: str = ""

    def values(self) -> dict[str, float]:
        busy = self.utilization / 100
        return {
            "DCGM_FI_DEV_SM_CLOCK": 300 + 1290 * busy,
            "DCGM_FI_DEV_MEM_CLOCK": 5000,
            "DCGM_FI_DEV_MEMORY_TEMP": 0,
            "DCGM_FI_DEV_GPU_TEMP": 34 + 40 * busy,
            "DCGM_FI_DEV_POWER_USAGE": 9.5 + 60 * busy,
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 4742776,
            "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": 0,
            "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": 0,
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": 0,
            "DCGM_FI_DEV_GPU_UTIL": self.utilization,
            "DCGM_FI_DEV_MEM_COPY_UTIL": self.utilization / 2,
            "DCGM_FI_DEV_ENC_UTIL": 0,
            "DCGM_FI_DEV_DEC_UTIL": 0,
            "DCGM_FI_DEV_XID_ERRORS": 0,
            "DCGM_FI_DEV_FB_FREE": _FB_TOTAL_MIB - self.fb_used,
            "DCGM_FI_DEV_FB_USED": self.fb_used,
            "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": 0,
            "DCGM_FI_DEV_VGPU_LICENSE_STATUS": 0,
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": 0,
            "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": 0,
            "DCGM_FI_DEV_ROW_REMAP_FAILURE": 0,
        }

    def labels(self) -> str:
        pairs = {
            "gpu": str(self.gpu),
            "UUID": self.uuid,
            "pci_bus_id": f"00000000:{self.gpu + 4:02X}:00.0",
            "device": f"nvidia{self.gpu}",
            "modelName": self.model,
            "Hostname": self.hostname,
            "DCGM_FI_DRIVER_VERSION": "550.127.05",
            "container": self.container,
            "namespace": self.namespace,
            "pod": self.pod,
        }
        return ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items())


def render(gpus: Sequence[CannedGpu]) -> str:
    """The exposition dcgm-exporter serves for `gpus`."""
    lines = []
    for name, kind, text in DEFAULT_COUNTERS:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for gpu in gpus:
            value = gpu.values()[name]
            shown = str(int(value)) if kind == "counter" or float(value).is_integer() else value
            lines.append(f"{name}{{{gpu.labels()}}} {shown}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class DcgmStandIn:
    def __init__(self, gpus: Sequence[CannedGpu] = ()) -> None:
        self._gpus = list(gpus)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.served = 0

    def set_gpus(self, gpus: Sequence[CannedGpu]) -> None:
        with self._lock:
            self._gpus = list(gpus)

    def metrics(self) -> str:
        with self._lock:
            self.served += 1
            return render(self._gpus)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> DcgmStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = standin.metrics().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class StandInProcess(ChildStandIn):
    """The stand-in in a child process, driven over its stdin and stdout."""

    what = "dcgm-exporter stand-in"

    def set_gpus(self, gpus: Sequence[CannedGpu]) -> None:
        self.ask({"op": "set", "gpus": [dataclasses.asdict(g) for g in gpus]})

    @property
    def served(self) -> int:
        return int(self.ask({"op": "state"})["served"])

    def wait_until_answering(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise self.failure(f"exited with code {self.process.returncode}")
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            if time.monotonic() > deadline:
                raise self.failure(f"not answering after {timeout:.0f}s")
            time.sleep(0.1)


@contextlib.contextmanager
def served(
    spawn: Callable[..., subprocess.Popen[str]],
    *,
    host: str,
    port: int,
    workdir: Path,
    timeout: float = 30.0,
) -> Iterator[StandInProcess]:
    """Run `serve` through `spawn` (`subprocess.Popen`, or a namespace's), until exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "dcgm-standin.log"
    argv = [sys.executable, "-m", "e2e.testbed.dcgm_standin", "serve", "--host", host,
            "--port", str(port)]  # fmt: skip
    standin = StandInProcess(launch(spawn, argv, log), host, port, log)
    try:
        standin.wait_until_answering(timeout)
        yield standin
    finally:
        standin.stop()


def _drive(standin: DcgmStandIn, commands: TextIO, answers: TextIO) -> None:
    for line in commands:
        command = json.loads(line)
        answer: dict[str, Any] = {}
        if command.get("op") == "set":
            standin.set_gpus([CannedGpu(**gpu) for gpu in command["gpus"]])
        elif command.get("op") == "state":
            answer = {"served": standin.served}
        else:
            answer = {"error": f"unknown op {command.get('op')!r}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.dcgm_standin")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve /metrics; driven over stdin and stdout")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9400)
    args = parser.parse_args(argv)
    standin = DcgmStandIn().start(host=args.host, port=args.port)
    try:
        _drive(standin, sys.stdin, sys.stdout)
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
