"""A real Prometheus per downstream cluster, scraping the test bed's exporter every second.

Real: the Prometheus server (built from `github.com/prometheus/prometheus` by
`e2e.testbed.binaries`), its scrapes, its TSDB and its PromQL. A stand-in: the values the
exporter serves (`e2e.testbed.exporter`), which tests set. Each Prometheus listens on one
address only (loopback, or a test network namespace's own address), keeps its TSDB in the
bed's directory, and has no remote read or write, no alerting and no web UI assets.

Two ways to run one, matching the two ways Herd finds a cluster's Prometheus
(`herd.addons.prometheus`):

- `start_local(name, workdir, pidfile)`: exporter and Prometheus on loopback as
  `ManagedProcess`es recorded in `pidfile` (the bed's or the demo's `pids`); Herd reaches
  it by URL (the `herd.suse.com/prometheus-url` annotation). `e2e/conftest.py`'s
  `prometheus_fleet` fixture runs one per downstream cluster; `e2e/demo.py` too.
- `start_in_netns(host, name, workdir)`: both inside a test network namespace
  (`e2e.testbed.netns`), so that a Service can point at it and Herd reaches it through
  the cluster's API server service proxy (`expose`, as the DCGM stand-in is).

`extra_targets` adds scrape targets (`host:port`, job `extra`), e.g. a DCGM stand-in.
`query` and `wait_for_value` read PromQL results straight from the server, for tests
that want to know a scrape has landed before Herd looks.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed import binaries, proxied
from e2e.testbed.exporter import ExporterClient
from e2e.testbed.netns import NetnsHost
from e2e.testbed.processes import ManagedProcess, TestBedError, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRAPE_INTERVAL = "1s"
START_SECONDS = 60.0
NETNS_EXPORTER_PORT = 9100
NETNS_PROMETHEUS_PORT = 9090
SERVICE_NAME = "prometheus"


@dataclass
class Monitored:
    """One cluster's Prometheus and the exporter it scrapes."""

    cluster: str
    url: str  # the Prometheus's base URL, http://host:port
    exporter: ExporterClient
    processes: list[ManagedProcess] = field(default_factory=list)
    children: list[subprocess.Popen[Any]] = field(default_factory=list)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


WORKLOAD_NAMESPACE = "inference"


def config(cluster: str, exporter: str, extra_targets: Sequence[str] = ()) -> str:
    """prometheus.yml: scrape `exporter` (and `extra_targets`) every second.

    The exporter stands for the inference server of `examples/canary-checks.yaml`, so its
    series carry `namespace="inference"`, as Kubernetes service discovery would label them
    and as that example's queries select them."""
    labels = {"cluster": cluster}
    jobs = [_job("workload", [exporter], {**labels, "namespace": WORKLOAD_NAMESPACE})]
    if extra_targets:
        jobs.append(_job("extra", list(extra_targets), labels))
    document = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(document, sort_keys=False)


def _job(name: str, targets: list[str], labels: dict[str, str]) -> dict[str, Any]:
    return {"job_name": name, "static_configs": [{"targets": targets, "labels": labels}]}


def argv(binary: Path, config_file: Path, data: Path, listen: str) -> list[str]:
    """The server's command line: one listen address, TSDB in `data`, nothing remote."""
    return [
        str(binary),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=2h",
        f"--web.listen-address={listen}",
        "--log.level=warn",
    ]


def start_local(
    cluster: str,
    workdir: Path,
    pidfile: Path,
    *,
    extra_targets: Sequence[str] = (),
    timeout: float = START_SECONDS,
) -> Monitored:
    """Exporter and Prometheus for `cluster` on loopback, under `workdir/<cluster>`."""
    home = (workdir / cluster).resolve()
    home.mkdir(parents=True, exist_ok=True)
    port_file = home / "exporter.port"
    port_file.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    exporter = ManagedProcess(
        f"exporter-{cluster}",
        [sys.executable, "-m", "e2e.testbed.exporter", "serve", "--port-file", str(port_file)],
        home / "exporter.log", pidfile, env,
    )  # fmt: skip
    exporter.start()
    wait_for(f"the exporter of {cluster}", port_file.is_file, timeout, [exporter])
    exporter_url = f"127.0.0.1:{port_file.read_text().strip()}"
    (home / "prometheus.yml").write_text(config(cluster, exporter_url, extra_targets))
    listen = f"127.0.0.1:{free_port()}"
    server = ManagedProcess(
        f"prometheus-{cluster}",
        argv(binaries.resolve().prometheus, home / "prometheus.yml", home / "data", listen),
        home / "prometheus.log", pidfile, dict(os.environ, GOMAXPROCS="1"), nice=5,
    )  # fmt: skip
    server.start()
    monitored = Monitored(cluster, f"http://{listen}", ExporterClient(f"http://{exporter_url}"))
    monitored.processes = [exporter, server]
    try:
        wait_for(f"Prometheus of {cluster} ready", lambda: ready(monitored.url), timeout, [server])
    except BaseException:
        monitored.stop()
        raise
    return monitored


def start_in_netns(
    host: NetnsHost, cluster: str, workdir: Path, *, timeout: float = START_SECONDS
) -> Monitored:
    """Exporter and Prometheus inside `host`'s namespace, on its address; the namespace
    kills them when it goes, `Monitored.stop` earlier."""
    home = (workdir / cluster).resolve()
    home.mkdir(parents=True, exist_ok=True)
    exporter_at = f"{host.address}:{NETNS_EXPORTER_PORT}"
    listen = f"{host.address}:{NETNS_PROMETHEUS_PORT}"
    (home / "prometheus.yml").write_text(config(cluster, exporter_at))
    monitored = Monitored(cluster, f"http://{listen}", ExporterClient(f"http://{exporter_at}"))
    exporter_argv = [sys.executable, "-m", "e2e.testbed.exporter", "serve", "--host",
                     host.address, "--port", str(NETNS_EXPORTER_PORT)]  # fmt: skip
    binary = binaries.resolve().prometheus
    env = dict(os.environ, PYTHONPATH=str(ROOT), GOMAXPROCS="1")
    for command, log in (
        (exporter_argv, home / "exporter.log"),
        (argv(binary, home / "prometheus.yml", home / "data", listen), home / "prometheus.log"),
    ):
        with log.open("w") as output:
            child = host.popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        monitored.children.append(child)
    deadline = time.monotonic() + timeout
    while not ready(monitored.url):
        dead = [c for c in monitored.children if c.poll() is not None]
        if dead or time.monotonic() > deadline:
            monitored.stop()
            logs = "\n".join((home / n).read_text()[-2000:] for n in ("exporter.log",
                                                                     "prometheus.log"))  # fmt: skip
            raise TestBedError(f"Prometheus of {cluster} in {host.namespace} not ready\n{logs}")
        time.sleep(0.2)
    return monitored


def expose(kubeconfig: Path, namespace: str, host: NetnsHost) -> None:
    """A Service `namespace/prometheus` (port 9090, `http-web`) in front of the namespace's
    Prometheus, for the API server service proxy; `proxied.remove` takes it away."""
    proxied.expose(
        kubeconfig,
        namespace,
        SERVICE_NAME,
        address=host.address,
        port=NETNS_PROMETHEUS_PORT,
        port_name="http-web",
        service_port=NETNS_PROMETHEUS_PORT,
        labels={"app.kubernetes.io/name": "prometheus"},
    )


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def query(url: str, promql: str) -> list[tuple[dict[str, str], float]]:
    """An instant query's vector (or scalar, as one unlabelled entry), straight from `url`."""
    address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(address, timeout=10) as answer:
        data = json.loads(answer.read())["data"]
    if data["resultType"] == "scalar":
        return [({}, float(data["result"][1]))]
    return [(item["metric"], float(item["value"][1])) for item in data["result"]]


def wait_for_value(
    url: str, promql: str, accept: Callable[[float], bool], timeout: float = 30.0
) -> float:
    """Poll until `promql` gives one value that `accept` takes; return it."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while True:
        found = query(url, promql)
        if len(found) == 1 and not math.isnan(found[0][1]) and accept(found[0][1]):
            return found[0][1]
        seen = found
        if time.monotonic() > deadline:
            raise TestBedError(f"{promql} at {url}: still {seen} after {timeout:.0f}s")
        time.sleep(0.5)
