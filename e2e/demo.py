"""`make demo`: the local default, end to end, left running.

Starts the test bed (1 management + 3 downstream clusters, the fixture chart repository,
Rancher-shaped cluster registration), installs the CRD, runs two Herd controllers in the
background (one leads and reconciles, the other stands by: `kubectl get lease -n
herd-system` shows the holder; kill the leader and the standby takes over), applies
`examples/grant-default.yaml` (the ClusterGrant letting Stacks in `default` reach the
demo clusters, labelled env=demo) and `examples/test-stack.yaml` pointed at the local
repository, waits for the Stack to reach Deployed and prints `kubectl get stacks` and
`helm ls -A` of each downstream cluster. Everything it starts is recorded in
`.demo/pids`, so `make demo-down` (`python -m e2e.testbed down --dir .demo`) stops it
all, both controllers included.

`.demo/env` is a sourceable file: KUBECONFIG (the management cluster), HERD_DEMO_REPO (the
chart repository URL) and HERD_DEMO_KUBECONFIGS (the directory of management.yaml and
downstream-1.yaml to downstream-3.yaml). Three downstream clusters let
`examples/staged-stack.yaml` show stages: a canary, then the others half at a time.

Private chart sources also run (`e2e.testbed.registry`): a distribution registry with
htpasswd auth and TLS from a private CA (HERD_DEMO_OCI_REPO) and an HTTPS chart repository
with basic auth (HERD_DEMO_AUTH_REPO), same user, password and CA (in the 0600 JSON file
HERD_DEMO_PRIVATE_INFO). The demo creates, in `default`, the Secrets
`herd-demo-registry` (basic-auth) and `herd-demo-registry-ca` (ca.crt) and the
ServiceAccount `herd-demo-puller` allowed to read them, as in
`examples/private-registry-secret.yaml.sample`; `examples/private-oci-stack.yaml` uses them.

Each downstream cluster also gets a real Prometheus scraping a test-bed exporter every
second (`e2e.testbed.prometheus`, `e2e.testbed.exporter`), both in `.demo/pids`. Its
provisioning Cluster is annotated `herd.suse.com/prometheus-url` with that Prometheus's
URL, which is how Herd finds it. `.demo/env` adds, per downstream cluster N:
HERD_DEMO_PROMETHEUS_N (the Prometheus's URL) and HERD_DEMO_EXPORTER_N (the exporter's URL:
`curl -d '{"rates": {"500": 5}}' $HERD_DEMO_EXPORTER_1/values` sets its values).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from e2e.testbed import __main__ as testbed
from e2e.testbed import binaries, components, processes
from e2e.testbed import prometheus as bed_prometheus
from e2e.testbed.helpers import wait_established
from herd.names import PROMETHEUS_URL_ANNOTATION

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
STACK_FILE = ROOT / "examples" / "test-stack.yaml"
GRANT_FILE = ROOT / "examples" / "grant-default.yaml"
PRIVATE_SAMPLE = ROOT / "examples" / "private-registry-secret.yaml.sample"
PRIVATE_INFO = DEMO / "private-sources.json"
DEPLOY_TIMEOUT = 300.0


def run(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, argv))} failed:\n{done.stderr}")
    return done.stdout


def demo_helm() -> str:
    """Helm 4, as the image ships it (the test bed builds it); `HERD_HELM` overrides."""
    return os.environ.get("HERD_HELM") or str(binaries.resolve().helm)


CONTROLLERS = ("herd-controller-1", "herd-controller-2")  # leader and standby


def start_controller(kubeconfig: Path, name: str, repos: list[str]) -> Path:
    log = DEMO / "logs" / f"{name}.log"
    # The demo's own repositories listen on loopback, which Herd refuses to tenant Stacks:
    # allow exactly their host:port, so that any other loopback port (and the metadata
    # address, the API server) stays refused as in a real install.
    allowed = ",".join(urlsplit(url).netloc.rpartition("@")[2] for url in repos)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HERD_NAMESPACE": "herd-system",
        "HERD_METRICS_PORT": str(processes.free_port()),
        "HERD_HEALTH_PORT": str(processes.free_port()),
        "HERD_FLEET_SECONDS": "5",
        # Its own working directory (kubeconfigs, helm home), emptied at each start.
        "HERD_WORKDIR": str(DEMO / "work" / name),
        # `make demo-down` gives each process 10 s after SIGTERM.
        "HERD_SHUTDOWN_SECONDS": "8",
        # Helm 4, as the image ships it (the test bed builds it; HERD_HELM overrides).
        "HERD_HELM": demo_helm(),
        "HERD_EGRESS_ALLOW_HOSTS": allowed,
    }
    controller = processes.ManagedProcess(
        name,
        [sys.executable, "-m", "herd", "operator"],
        log,
        DEMO / processes.PIDFILE,
        env,
    )
    controller.start()
    return log


def wait_leader(kubeconfig: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "lease", "herd-controller",
             "-n", "herd-system", "-o", "jsonpath={.spec.holderIdentity}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
        time.sleep(1)
    raise SystemExit("no controller acquired the Lease herd-system/herd-controller in 60s")


def add_gpu_node(kubeconfig: Path) -> None:
    """A kwok node with 4 nvidia.com/gpu (kwok keeps the capacity it is made with), so
    `examples/gpu-stack.yaml` fits on this cluster and not on the other."""
    node = components.fake_node("kwok-gpu-1", gpus=4)
    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", "-"],
        input=json.dumps(node), text=True, capture_output=True, check=True,
    )  # fmt: skip


def demo_stack(repo: str) -> dict[str, Any]:
    stack: dict[str, Any] = yaml.safe_load(STACK_FILE.read_text())
    for chart in stack["spec"]["charts"]:
        chart["repo"] = repo
    return stack


def wait_deployed(kubeconfig: Path, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = run("kubectl", "--kubeconfig", kubeconfig, "get", "stack", name, "-o", "json")
        status = json.loads(out).get("status") or {}
        if status.get("phase") in ("Deployed", "Degraded", "Failed"):
            return status
        time.sleep(1)
    raise SystemExit(f"stack {name} not deployed after {DEPLOY_TIMEOUT:.0f}s: {status}")


def start_private_sources(management: Path) -> dict[str, str]:
    """The registry and the authenticated repository, and the Secrets to pull from them."""
    PRIVATE_INFO.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "e2e.testbed.registry", "serve", "--dir", str(DEMO / "private")]
    server = processes.ManagedProcess(
        "private-sources",
        [*argv, "--info-file", str(PRIVATE_INFO)],
        DEMO / "logs" / "private-sources.log",
        DEMO / processes.PIDFILE,
        dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    server.start()
    processes.wait_for("the private registry", PRIVATE_INFO.is_file, 120, [server])
    info: dict[str, str] = json.loads(PRIVATE_INFO.read_text())
    objects = list(yaml.safe_load_all(PRIVATE_SAMPLE.read_text()))
    objects[0]["stringData"] = {"username": info["username"], "password": info["password"]}
    objects[1]["stringData"] = {"ca.crt": Path(info["ca"]).read_text()}
    subprocess.run(  # the password goes through stdin, never argv
        ["kubectl", "--kubeconfig", str(management), "apply", "-f", "-"],
        input=yaml.safe_dump_all(objects), text=True, check=True, capture_output=True,
    )  # fmt: skip
    return info


def start_monitoring(summary: dict[str, Any]) -> dict[str, str]:
    """A Prometheus and an exporter per downstream cluster (baseline traffic: 10 requests/s,
    no errors, 50 ms; downstream-1's GPU at 40 %), each cluster annotated with its URL.
    Returns the `.demo/env` variables naming them."""
    management = summary["kubeconfigs"]["management"]
    names = [name for name in summary["kubeconfigs"] if name != "management"]
    found: dict[str, str] = {}
    for name in names:
        monitored = bed_prometheus.start_local(name, DEMO / "prometheus", DEMO / processes.PIDFILE)
        gpus = {"0": 40} if name == "downstream-1" else {}
        monitored.exporter.set(rates={"200": 10}, latency_seconds=0.05, gpu_utilization=gpus)
        run("kubectl", "--kubeconfig", management, "annotate", "--overwrite", "-n",
            "fleet-default", "clusters.provisioning.cattle.io", name,
            f"{PROMETHEUS_URL_ANNOTATION}={monitored.url}")  # fmt: skip
        suffix = name.removeprefix("downstream-").upper().replace("-", "_")
        found[f"HERD_DEMO_PROMETHEUS_{suffix}"] = monitored.url
        found[f"HERD_DEMO_EXPORTER_{suffix}"] = monitored.exporter.url
    return found


def write_env(
    summary: dict[str, Any],
    private: dict[str, str] | None = None,
    monitoring: dict[str, str] | None = None,
) -> None:
    kubeconfigs = {name: Path(path) for name, path in summary["kubeconfigs"].items()}
    values = {
        "KUBECONFIG": str(kubeconfigs["management"]),
        "HERD_DEMO_REPO": summary["chart_repo_url"],
        "HERD_DEMO_KUBECONFIGS": str(kubeconfigs["management"].parent),
    }
    if private is not None:
        values["HERD_DEMO_OCI_REPO"] = private["oci_repo"]
        values["HERD_DEMO_AUTH_REPO"] = private["https_repo"]
        values["HERD_DEMO_PRIVATE_INFO"] = str(PRIVATE_INFO)
    values.update(monitoring or {})
    lines = ["# Written by `make demo`; source it: . .demo/env"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    (DEMO / "env").write_text("\n".join(lines) + "\n")


def main() -> int:
    if testbed.up(DEMO, downstream=3, chart_repo=True, rancher=True):
        return 1
    summary = json.loads((DEMO / testbed.SUMMARY).read_text())
    write_env(summary)
    management = Path(summary["kubeconfigs"]["management"])
    add_gpu_node(Path(summary["kubeconfigs"]["downstream-1"]))
    run("kubectl", "--kubeconfig", management, "apply", "-f", ROOT / "crds")
    wait_established(management, "stacks.herd.suse.com")
    # Stacks in `default` (the examples) are tenants: the demo grants them its clusters.
    wait_established(management, "clustergrants.herd.suse.com")
    run("kubectl", "--kubeconfig", management, "apply", "-f", GRANT_FILE)
    private = start_private_sources(management)
    monitoring = start_monitoring(summary)
    write_env(summary, private, monitoring)
    repos = [summary["chart_repo_url"], private["oci_repo"], private["https_repo"]]
    subprocess.run(  # the Lease's namespace ("already exists" is fine)
        ["kubectl", "--kubeconfig", str(management), "create", "namespace", "herd-system"],
        capture_output=True, check=False,
    )  # fmt: skip
    logs = [start_controller(management, name, repos) for name in CONTROLLERS]
    print(f"Herd controllers running, one leads, one stands by (logs: {', '.join(map(str, logs))})")
    print(f"Lease herd-system/herd-controller held by {wait_leader(management)}")
    stack = demo_stack(summary["chart_repo_url"])
    subprocess.run(
        ["kubectl", "--kubeconfig", str(management), "apply", "-f", "-"],
        input=yaml.safe_dump(stack), text=True, check=True,
    )  # fmt: skip
    status = wait_deployed(management, stack["metadata"]["name"])
    print(run("kubectl", "--kubeconfig", management, "get", "stacks", "-A"))
    for name, path in summary["kubeconfigs"].items():
        if name != "management":
            print(f"--- helm ls -A on {name}")
            print(run(demo_helm(), "--kubeconfig", path, "ls", "-A"))
    print(f"Stack {stack['metadata']['name']}: {status.get('phase')}: {status.get('message')}")
    print("Everything keeps running. Try:  . .demo/env && kubectl get stacks -w")
    print("Leader election:  kubectl get lease -n herd-system")
    print(
        "Private registry (README: Private chart sources):  sed "
        '"s#oci://registry.example.com:5000/charts#$HERD_DEMO_OCI_REPO#" '
        "examples/private-oci-stack.yaml | kubectl apply -f -"
    )
    print("GPUs (downstream-1 has 4, the others none): see examples/gpu-stack.yaml,")
    print("  and examples/gpu-placement.yaml (pickN: 1 picks downstream-1)")
    print("Stages (a canary behind an approval): see examples/staged-stack.yaml")
    print(
        'Prometheus per downstream cluster:  curl -s "$HERD_DEMO_PROMETHEUS_1/api/v1/query'
        '?query=up"; set values:  curl -d \'{"rates": {"500": 5}}\' '
        "$HERD_DEMO_EXPORTER_1/values"
    )
    print("Stop it all with:  make demo-down")
    return 0 if status.get("phase") == "Deployed" else 1


if __name__ == "__main__":
    sys.exit(main())
