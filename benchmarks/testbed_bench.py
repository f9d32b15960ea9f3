"""How fast the local test bed starts and how much memory it holds. Prints; asserts nothing.

Run: `.venv/bin/python benchmarks/testbed_bench.py [--downstream 3] [--rounds 1]`.
Measures, with binaries already built (warm): seconds from start to every apiserver's
/readyz, seconds until every cluster is usable (Ready fake nodes, default
ServiceAccount), RSS per cluster (the sum of its processes), the shared etcd's RSS, and
the build time recorded by the last `python -m e2e.testbed.binaries` build (cold only
when the Go build cache was empty then).
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from e2e.testbed import binaries
from e2e.testbed.controlplane import TestBed
from e2e.testbed.kube import ApiClient


def rss_mib(pid: int | None) -> float:
    """Resident memory of one process, from /proc (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


class ReadyzWatch:
    """Notes the moment every apiserver of a starting TestBed first answers /readyz.

    TestBed.start only returns once clusters are fully usable; this runs beside it so
    the bench can report the earlier /readyz milestone too.
    """

    def __init__(self, workdir: Path, names: list[str], started: float) -> None:
        self.seconds: float | None = None
        self._workdir, self._names, self._started = workdir, names, started
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReadyzWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        pending = set(self._names)
        clients: dict[str, ApiClient] = {}
        while pending and not self._done.wait(0.05):
            for name in list(pending):
                client = clients.get(name) or self._client(name)
                if client is None:
                    continue
                clients[name] = client
                if client.ok("/readyz"):
                    pending.discard(name)
        if not pending:
            self.seconds = time.monotonic() - self._started

    def _client(self, name: str) -> ApiClient | None:
        """A client once the cluster's kubeconfig and CA exist (they appear mid-start)."""
        path = self._workdir / "kubeconfigs" / f"{name}.yaml"
        ca = self._workdir / "clusters" / name / "pki" / "ca.crt"
        try:
            server = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"]
            return ApiClient(server, ca)
        except (OSError, ssl.SSLError, TypeError, KeyError):
            return None


def one_round(names: list[str], bins: binaries.Binaries) -> None:
    with tempfile.TemporaryDirectory(prefix="herd-bench-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        with ReadyzWatch(workdir, names, started) as watch:
            bed = TestBed.start(names, workdir, binaries=bins)
            usable = time.monotonic() - started
        try:
            readyz = f"{watch.seconds:.1f}s" if watch.seconds is not None else "n/a"
            print(f"start -> all /readyz: {readyz}; -> all usable: {usable:.1f}s")
            time.sleep(5)  # let start-up transients (caches filling) settle before RSS
            for name, cluster in bed.clusters.items():
                parts = {p.name.split("/")[1]: rss_mib(p.pid) for p in cluster.processes}
                detail = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
                print(f"  {name:<14} RSS {sum(parts.values()):6.0f} MiB ({detail})")
            etcd_pid = bed.etcd.process.pid if bed.etcd else None
            print(f"  {'etcd (shared)':<14} RSS {rss_mib(etcd_pid):6.0f} MiB")
        finally:
            stop_started = time.monotonic()
            bed.stop()
            print(f"stop: {time.monotonic() - stop_started:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--downstream", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    bins = binaries.resolve()
    info = binaries.build_info() or {}
    print(
        f"kubernetes {binaries.KUBERNETES_VERSION}, etcd {binaries.ETCD_VERSION}, "
        f"kwok {binaries.KWOK_VERSION}"
    )
    seconds, cache = info.get("build_seconds", "unknown"), info.get("go_build_cache", "unknown")
    print(f"last binaries build (recorded): {seconds}s with a {cache} Go build cache")
    names = ["management", *(f"downstream-{i}" for i in range(1, args.downstream + 1))]
    for round_number in range(1, args.rounds + 1):
        print(f"round {round_number}: {len(names)} clusters")
        one_round(names, bins)


if __name__ == "__main__":
    main()
