"""Drift detection cost, real and simulated. Prints every figure of issue 23:

    /work/notes/e2elock .venv/bin/python -m benchmarks.drift_bench
        [--interval 20] [--rounds 2] [--clusters 1000] [--charts 20] [--real-only|--sim-only]

Real (`benchmarks._drift_real`): 3 test-bed clusters x 5 fixture charts through Herd's
engine, a no-drift pass and passes with 1% drifted objects (requests per release, wall
time, CPU), and the delay from a change to its detection (Warn) and correction (Correct)
against one interval plus 10%. It starts a test bed: run it through the e2e lock.

Simulated (below): measure what `herd.clusters.drift.check_cluster` (the code the operator runs per
cluster and pass) costs at fleet scale without a fleet: each cluster is an in-memory API
(`SimApi`, answering the paths, metadata-only lists and server-side applies Herd sends) with
`charts` releases of the `app` fixture's shape (Deployment, ConfigMap, Service), spread over
five namespaces. It prints, per pass, the requests per cluster, per (kind, namespace) group
and per release, and Herd's CPU and wall time for the whole fleet:

- `first`: the first check after a start (every manifest and object read once);
- `no drift`: a pass over untouched releases (the bound: one list per group);
- `1% drift (Warn)` and `1% drift (Correct)`: 1% of the objects changed beforehand.

What it does not measure: API server latency and the helm observation each pass makes
anyway (one metadata list per cluster); the real half does.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import yaml
from benchmarks._drift_real import run_real

from herd.clusters.drift import DriftMemory, ReleaseCheck, check_cluster
from herd.clusters.drift_paths import object_path
from herd.plan.drift import ObjectRef, Policy, with_helm_metadata
from herd.plan.ownership import Recorded, manifest_digest
from herd.plan.releases import ReleaseKey

NAMESPACES = 5
_PLURALS = ("configmaps", "services", "deployments")
INTERVAL = 600.0


def manifest(name: str, namespace: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "app", "app.kubernetes.io/managed-by": "Helm"}
    meta = {"name": name, "namespace": namespace, "labels": labels}
    container = {"name": "app", "image": "registry.example.com/herd/app:0.1.0"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"message": "hi"}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": labels},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
    ]


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.reason, self._data = status, "", json.dumps(body).encode()

    def read(self) -> bytes:
        return self._data


@dataclass
class SimApi:
    """One cluster's API: objects by path, helm release Secrets, a request count."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    version: int = 1

    def param_serialize(self, **request: Any) -> tuple[Any, ...]:
        return (request["method"], request["resource_path"], request.get("body"))

    def call_api(self, method: str, path: str, body: Any, **_: Any) -> _Response:
        self.requests += 1
        if method == "GET" and path in self.objects:
            return _Response(200, self.objects[path])
        if method == "GET" and path.rsplit("/", 1)[-1] in _PLURALS:
            prefix = path + "/"
            items = [
                {"metadata": {k: o["metadata"][k] for k in ("name", "resourceVersion")}}
                for p, o in self.objects.items()
                if p.startswith(prefix) and "/" not in p[len(prefix) :]
            ]
            return _Response(200, {"items": items})
        if method == "PATCH":
            return _Response(200, self.put(path, json.loads(body)))
        return _Response(404, {})

    def put(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[path] = obj
        return obj


def build(charts: int) -> tuple[SimApi, list[ReleaseCheck]]:
    api, checks = SimApi(), []
    for index in range(charts):
        name, namespace = f"r{index}", f"ns{index % NAMESPACES}"
        objects = manifest(name, namespace)
        for obj in objects:
            ref = ObjectRef(obj["apiVersion"], obj["kind"], namespace, name)
            api.put(object_path(ref), with_helm_metadata(obj, name, namespace))  # as helm does
        text = "---\n".join(yaml.safe_dump(o) for o in objects)
        release = {"manifest": text}
        stored = base64.b64encode(gzip.compress(json.dumps(release).encode())).decode()
        secret = {"data": {"release": base64.b64encode(stored.encode()).decode()}}
        api.objects[f"/api/v1/namespaces/{namespace}/secrets/sh.helm.release.v1.{name}.v1"] = secret
        key, vouched = ReleaseKey("c", namespace, name), Recorded(1, manifest_digest(text))
        checks.append(ReleaseCheck(key, 1, Policy(interval=INTERVAL), recorded=vouched))
    return api, checks


def drift(apis: list[SimApi], share: float, rng: random.Random) -> int:
    changed = 0
    for api in apis:
        for path in [p for p in api.objects if "/configmaps/" in p]:
            if rng.random() < share * 3:  # one object in three is a ConfigMap
                obj = api.objects[path]
                api.put(path, {**obj, "data": {"message": "edited"}})
                changed += 1
    return changed


def run_pass(
    label: str,
    fleet: list[tuple[SimApi, list[ReleaseCheck], DriftMemory]],
    now: float,
    *,
    write: bool = False,
) -> None:
    before = sum(api.requests for api, _, _ in fleet)
    cpu, wall, drifted = time.process_time(), time.perf_counter(), 0
    for api, checks, memory in fleet:
        policy = Policy("Correct" if write else "Warn", INTERVAL)
        todo = [ReleaseCheck(c.key, c.revision, policy, write, c.recorded) for c in checks]
        sim: Any = api  # answers what `herd.clusters.drift_api` sends
        found = check_cluster(memory, "bench", todo, admin=sim, writer=sim, now=now)
        drifted += sum(d.count for d in found.values())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    requests = sum(api.requests for api, _, _ in fleet) - before
    clusters, releases = len(fleet), sum(len(c) for _, c, _ in fleet)
    groups = clusters * 3 * min(NAMESPACES, len(fleet[0][1]))
    print(
        f"{label:<20} requests/cluster {requests / clusters:7.1f}  "
        f"/group {requests / groups:5.2f}  /release {requests / releases:5.2f}  "
        f"drifted {drifted:6d}  cpu {cpu:6.2f}s  wall {wall:6.2f}s"
    )


def simulate(clusters: int, charts: int) -> None:
    print(f"simulated: {clusters} clusters x {charts} charts, {NAMESPACES} namespaces each")
    fleet = [(*build(charts), DriftMemory()) for _ in range(clusters)]
    now = time.time()
    for _api, checks, memory in fleet:  # every release due at once: the worst pass
        for check in checks:
            memory.expect("bench", check.key, 0.0, now)
    run_pass("first", fleet, now)
    run_pass("no drift", fleet, now + INTERVAL)
    changed = drift([api for api, _, _ in fleet], 0.01, random.Random(1))
    print(f"(changed {changed} objects, 1%)")
    run_pass("1% drift (Warn)", fleet, now + 2 * INTERVAL)
    run_pass("1% drift (Correct)", fleet, now + 3 * INTERVAL, write=True)
    run_pass("after correction", fleet, now + 4 * INTERVAL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--interval", type=float, default=20.0, help="real: seconds")
    parser.add_argument("--rounds", type=int, default=2, help="real: changes per mode")
    parser.add_argument("--clusters", type=int, default=1000, help="simulated")
    parser.add_argument("--charts", type=int, default=20, help="simulated")
    parser.add_argument("--real-only", action="store_true")
    parser.add_argument("--sim-only", action="store_true")
    args = parser.parse_args()
    if not args.sim_only:
        run_real(args.interval, args.rounds)
    if not args.real_only:
        simulate(args.clusters, args.charts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
