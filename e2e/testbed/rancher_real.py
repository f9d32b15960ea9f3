"""A real Rancher server and real cluster agents as test-bed processes (the `rancher_real` lane).

Role: run the Rancher server binary against the bed's management control plane, import
downstream clusters the way a user does (a provisioning Cluster, its registration token,
the import manifest applied downstream) and run each cluster's agent (`cmd/agent`) as a
process that opens Rancher's tunnel. Rancher then writes the `<name>-kubeconfig` Secrets
Herd reads, pointing at its own `/k8s/clusters/<id>` proxy.

Binaries are never built here: `find_binaries` takes them from `HERD_RANCHER_BIN` and
`HERD_RANCHER_AGENT_BIN`, else `~/.cache/herd/rancher/{rancher,agent}`, and says what is
missing otherwise (the lane then skips).

The agent expects to run in a pod: in-cluster config (KUBERNETES_SERVICE_HOST/PORT and the
ServiceAccount files under /var/run/secrets/kubernetes.io/serviceaccount) and its
registration credentials under /cattle-credentials. Each agent gets them in a mount
namespace of its own (`unshare --mount`, a tmpfs on /run and a bind mount on
/cattle-credentials), so it needs root; the empty /cattle-credentials mount point is made
if absent and removed by `remove_mount_point`.

Callers: e2e/test_rancher_real.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.processes import ManagedProcess, TestBedError, free_port, wait_for

RANCHER_TAG = "v2.15.0"  # the rancher/rancher tag the cached binaries were built from
CACHE = Path(os.environ.get("HERD_CACHE", Path.home() / ".cache" / "herd")) / "rancher"
CREDENTIALS_MOUNT = Path("/cattle-credentials")  # fixed in the agent (pkg/agent/cluster)
IMPORT_NAMESPACE = "fleet-default"
START_TIMEOUT = 420.0
RESTARTS = 3  # Rancher exits to be restarted (as its pod would be) after setting features
# Everything that would reach the internet is off or points at a closed loopback port:
# bundled system charts, Kontainer Driver Metadata and the chart repositories' default URL;
# Fleet (it installs charts with images) and the UI extensions are off.
OFFLINE = {
    "CATTLE_SYSTEM_CATALOG": "bundled",
    "CATTLE_RKE_METADATA_CONFIG": json.dumps(
        {"url": "http://127.0.0.1:9/data.json", "refresh-interval-minutes": "0"}
    ),
    "CATTLE_CHART_DEFAULT_URL": "http://127.0.0.1:9/",
    "CATTLE_FEATURES": (
        "fleet=false,continuous-delivery=false,harvester=false,uiextension=false,turtles=false"
    ),
    # Drivers and charts come from local dirs, not downloads (CATTLE_DEV_MODE's meaning).
    "CATTLE_DEV_MODE": "yes",
    # The imperative API's remotedialer-proxy needs a pod in cattle-system: use it direct.
    "IMPERATIVE_API_DIRECT": "true",
}


AGENT_FEATURES = (
    "multi-cluster-management=false,multi-cluster-management-agent=true,fleet=false,"
    "rke2=false,provisioningv2=false,turtles=false,provisioningprebootstrap=false,"
    "managed-system-upgrade-controller=false"
)


@dataclass(frozen=True)
class RancherBinaries:
    server: Path
    agent: Path


def find_binaries() -> tuple[RancherBinaries | None, str]:
    """The Rancher server and agent binaries, or None and a sentence naming what is missing."""
    server = Path(os.environ.get("HERD_RANCHER_BIN") or CACHE / "rancher")
    agent = Path(os.environ.get("HERD_RANCHER_AGENT_BIN") or CACHE / "agent")
    missing = [
        f"{what} {path}"
        for what, path in (("server", server), ("agent", agent))
        if not os.access(path, os.X_OK)
    ]
    if missing:
        return None, (
            f"no Rancher {RANCHER_TAG} binaries ({'; '.join(missing)}): set HERD_RANCHER_BIN "
            f"and HERD_RANCHER_AGENT_BIN, or put rancher and agent in {CACHE}"
        )
    if os.geteuid() != 0:
        return None, "the Rancher agents need root (a mount namespace each)"
    return RancherBinaries(server, agent), ""


def report_figures(figures: dict[str, Any], workdir: Path, variable: str, title: str) -> None:
    """Print a lane's figures, write them to `workdir/figures.json` and to `$variable`."""
    text = json.dumps(figures, indent=2, sort_keys=True)
    (workdir / "figures.json").write_text(text + "\n")
    if os.environ.get(variable):
        Path(os.environ[variable]).write_text(text + "\n")
    print(f"\n{title} figures:\n{text}")


def rss_mib(pid: int | None) -> float:
    """Resident memory of a process, in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "")
    return int(line.split()[1]) / 1024 if line else 0.0


class RancherServer:
    """The Rancher server process; `start` returns once it serves and `local` is ready."""

    def __init__(self, binary: Path, management: BedCluster, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.management = management
        self.workdir = workdir
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.bootstrap_password = os.urandom(12).hex()  # admin's, for the API (rancher_apps)
        env = {
            **os.environ,
            **OFFLINE,
            "KUBECONFIG": str(management.kubeconfig),
            "CATTLE_SERVER_URL": self.url,
            "CATTLE_BOOTSTRAP_PASSWORD": self.bootstrap_password,
            "HOME": str(home),
        }
        argv = [
            str(binary),
            "--http-listen-port", str(free_port()),
            "--https-listen-port", str(self.port),
            "--profile-listen-address", f"127.0.0.1:{free_port()}",
        ]  # fmt: skip
        self.process = ManagedProcess(
            "rancher",
            argv,
            workdir / "rancher.log",
            workdir / "pids",
            env,
            tier=1,
            nice=10,
            cwd=workdir,
        )
        self.start_seconds = 0.0
        self.restarts = 0
        self.ca_file = workdir / "rancher-ca.crt"

    def start(self) -> RancherServer:
        """Start and wait until it serves; `start_seconds` includes the restarts it asks for.

        On a fresh management cluster Rancher exits 0 after it has set its feature flags
        ("feature flag [fleet] value has changed ..., rancher must be restarted"), counting
        on its pod being restarted: it is restarted here, a few times at most.
        """
        began = time.monotonic()
        for attempt in range(RESTARTS + 1):
            self.restarts = attempt
            self.process.start()
            try:
                wait_for("Rancher /ping", self._pong, START_TIMEOUT, [self.process])
                wait_for("Rancher's local cluster", self._local_ready, START_TIMEOUT,
                         [self.process])  # fmt: skip
                break
            except TestBedError:
                exited = self.process.popen.poll() if self.process.popen else None
                if exited is None or attempt == RESTARTS:
                    raise
                self.process.stop()
        self.start_seconds = time.monotonic() - began
        self.ca_file.write_text(self._ca())
        return self

    def stop(self) -> None:
        self.process.stop()

    @property
    def rss_mib(self) -> float:
        return rss_mib(self.process.pid)

    def _pong(self) -> bool:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # only asks whether it serves yet
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=3, context=insecure) as r:
                return bool(r.read() == b"pong")
        except OSError:
            return False

    def _local_ready(self) -> bool:
        out = kubectl(
            self.management, "get", "clusters.provisioning.cattle.io", "-n", "fleet-local",
            "local", "-o", "jsonpath={.status.ready}", check=False,
        )  # fmt: skip
        return out.strip() == "true"

    def _ca(self) -> str:
        """Rancher's CA (the `cacerts` setting, as the kubeconfigs it writes carry it)."""
        return eventually(
            "Rancher's cacerts setting",
            lambda: kubectl(
                self.management,
                "get",
                "settings.management.cattle.io",
                "cacerts",
                "-o",
                "jsonpath={.value}",
                check=False,
            ).strip(),
            timeout=120,
        )


@dataclass
class ImportedCluster:
    """A downstream cluster imported into Rancher, with its agent process."""

    name: str
    cluster_id: str  # Rancher's management id, c-m-...
    downstream: BedCluster
    agent: ManagedProcess

    @property
    def rss_mib(self) -> float:
        return rss_mib(self.agent.pid)


def import_cluster(
    rancher: RancherServer,
    agent_binary: Path,
    name: str,
    downstream: BedCluster,
    labels: dict[str, str],
) -> ImportedCluster:
    """Import `downstream` as a user does and start its agent (not yet connected)."""
    management = rancher.management
    body = {
        "apiVersion": "provisioning.cattle.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": IMPORT_NAMESPACE, "labels": labels},
        "spec": {},
    }
    kubectl(management, "apply", "-f", "-", stdin=json.dumps(body))
    cluster_id = eventually(
        f"Rancher's management id for {name}",
        lambda: _jsonpath(
            management,
            "clusters.provisioning.cattle.io",
            name,
            IMPORT_NAMESPACE,
            "{.status.clusterName}",
        ),
        timeout=120,
    )
    manifest = _import_manifest(rancher, cluster_id)
    kubectl(downstream, "apply", "-f", "-", stdin=manifest)
    # The manifest's Deployment would run the agent image; the process below is the agent.
    kubectl(downstream, "-n", "cattle-system", "scale", "deployment/cattle-cluster-agent",
            "--replicas=0")  # fmt: skip
    workdir = rancher.workdir / "agents" / name
    env = _agent_env(rancher, downstream, manifest, workdir)
    # argv[0] is the agent (what finally runs, as the pidfile records it); unshare runs first.
    argv = [str(agent_binary), "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            _MOUNTS]  # fmt: skip
    agent = ManagedProcess(f"agent-{name}", argv, workdir / "agent.log", rancher.workdir / "pids",
                           {**env, "HERD_AGENT_BIN": str(agent_binary)},
                           executable="unshare", nice=10, cwd=workdir)  # fmt: skip
    ensure_mount_point()
    agent.start()
    return ImportedCluster(name, cluster_id, downstream, agent)


# Runs as root in the agent's own mount namespace: the pod's files at their fixed paths.
_MOUNTS = """set -e
mount -t tmpfs -o mode=0755 herd-agent-run /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
cp "$HERD_AGENT_DIR"/serviceaccount/* /run/secrets/kubernetes.io/serviceaccount/
mount --bind "$HERD_AGENT_DIR/credentials" /cattle-credentials
cd "$HERD_AGENT_DIR"
exec "$HERD_AGENT_BIN"
"""


def ensure_mount_point() -> None:
    if not CREDENTIALS_MOUNT.exists():
        CREDENTIALS_MOUNT.mkdir(mode=0o700)
        (CREDENTIALS_MOUNT.parent / ".herd-made-cattle-credentials").touch()


def remove_mount_point() -> None:
    """Remove /cattle-credentials if this bed made it (only an empty mount point)."""
    marker = CREDENTIALS_MOUNT.parent / ".herd-made-cattle-credentials"
    if marker.exists():
        with contextlib.suppress(OSError):
            CREDENTIALS_MOUNT.rmdir()
        marker.unlink(missing_ok=True)


def agent_connected(management: BedCluster, cluster_id: str) -> bool:
    """Rancher's management Cluster says its agent's tunnel is up."""
    out = _jsonpath(management, "clusters.management.cattle.io", cluster_id, None,
                    '{.status.conditions[?(@.type=="Connected")].status}')  # fmt: skip
    return out == "True"


def _jsonpath(target: BedCluster, kind: str, name: str, namespace: str | None, path: str) -> str:
    scope = ["-n", namespace] if namespace else []
    return kubectl(target, "get", kind, name, *scope, "-o", f"jsonpath={path}", check=False).strip()


def _import_manifest(rancher: RancherServer, cluster_id: str) -> str:
    """The manifest Rancher serves at its import URL (what `kubectl apply -f <url>` gets)."""
    management = rancher.management
    secret = eventually(
        "the registration token",
        lambda: _jsonpath(
            management,
            "clusterregistrationtokens.management.cattle.io",
            "default-token",
            cluster_id,
            "{.status.tokenSecretName}",
        ),
        timeout=120,
    )
    encoded = _jsonpath(management, "secret", secret, cluster_id, "{.data.token}")
    token = base64.b64decode(encoded).decode()
    context = ssl.create_default_context(cafile=str(rancher.ca_file))
    url = f"{rancher.url}/v3/import/{token}_{cluster_id}.yaml"
    with urllib.request.urlopen(url, timeout=30, context=context) as response:
        return str(response.read().decode())


def _agent_env(
    rancher: RancherServer, downstream: BedCluster, manifest: str, workdir: Path
) -> dict[str, str]:
    """The Deployment's environment, plus the pod's in-cluster config made by hand."""
    documents = [d for d in yaml.safe_load_all(manifest) if d]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env", []) if "value" in e}
    credentials = workdir / "credentials"
    accounts = workdir / "serviceaccount"
    for directory in (credentials, accounts):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = json.loads(kubectl(downstream, "-n", "cattle-system", "get", "secret",
                                env["CATTLE_CREDENTIAL_NAME"], "-o", "json"))  # fmt: skip
    for key, value in (secret.get("data") or {}).items():
        _private(credentials / key, base64.b64decode(value))
    token = kubectl(downstream, "-n", "cattle-system", "create", "token", "cattle",
                    "--duration", "6h").strip()  # fmt: skip
    ca = _jsonpath(downstream, "configmap", "kube-root-ca.crt", "cattle-system", "{.data.ca\\.crt}")
    _private(accounts / "token", token.encode())
    _private(accounts / "ca.crt", ca.encode())
    _private(accounts / "namespace", b"cattle-system")
    port = downstream.server.rsplit(":", 1)[-1]
    return {
        **os.environ,
        **env,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": port,
        # The pod would find Rancher's CA at /etc/kubernetes/ssl/certs/serverca; a file
        # named by SSL_CERT_FILE is trusted the same way, without one more mount point.
        "SSL_CERT_FILE": str(rancher.ca_file),
        "STRICT_VERIFY": "false",
        # What Rancher's agent redeploy (pkg/systemtemplate/import.go) gives an imported
        # cluster's agent; the register-only manifest has none, and no pod restarts here.
        "CATTLE_FEATURES": AGENT_FEATURES,
        "HERD_AGENT_DIR": str(workdir),
    }


def _private(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    path.chmod(0o600)


def proxy_kubeconfig(management: BedCluster, name: str) -> dict[str, Any]:
    """The kubeconfig Rancher wrote for `name` (parsed; for asserting where it points)."""
    encoded = _jsonpath(management, "secret", f"{name}-kubeconfig", IMPORT_NAMESPACE,
                        "{.data.value}")  # fmt: skip
    document: dict[str, Any] = yaml.safe_load(base64.b64decode(encoded))
    return document


def kubeconfig_user(management: BedCluster, name: str) -> str:
    """The Rancher user (`u-…`) whose token the `<name>-kubeconfig` Secret carries: the
    token's name is what precedes the colon, and the Token object names its user."""
    encoded = _jsonpath(management, "secret", f"{name}-kubeconfig", IMPORT_NAMESPACE,
                        "{.data.token}")  # fmt: skip
    token_name = base64.b64decode(encoded).decode().split(":", 1)[0]
    return _jsonpath(management, "tokens.management.cattle.io", token_name, None, "{.userId}")


def allow_service_account_impersonation(management: BedCluster, user: str) -> None:
    """Let Rancher's user `user` impersonate the tenants' ServiceAccounts at Rancher's proxy.

    Rancher checks a ServiceAccount impersonation with a SubjectAccessReview on its *local*
    (management) cluster, not downstream (pkg/auth/requests/impersonate.go, the SAR client
    of pkg/multiclustermanager/routes.go): the system user of a kubeconfig Secret, cluster
    owner downstream, has no such right there. What an admin binds: install/'s ClusterRole
    `herd-impersonate-serviceaccounts`, in `herd-tenants` only.
    """
    kubectl(management, "create", "namespace", "herd-tenants", check=False)
    kubectl(management, "-n", "herd-tenants", "create", "rolebinding", f"herd-rancher-{user}",
            "--clusterrole=herd-impersonate-serviceaccounts", f"--user={user}")  # fmt: skip
