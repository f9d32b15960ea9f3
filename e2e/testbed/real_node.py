"""One real Node for a test-bed cluster: kubelet and containerd, with runc, as processes.

Role: kwok's nodes run no container. The real-Rancher lane needs one pod really run:
Rancher's helm operation (`helm-operation-*` in cattle-system). This module registers
one real Node with the management control plane:

- containerd (Debian's package) with runc and the CNI `bridge`/`host-local`/`loopback`
  plugins (`containernetworking-plugins`), its root, state, socket and CNI files under the
  lane's work directory, in a mount namespace of its own with a tmpfs on /run, so nothing
  of it is left on the host when it stops;
- the kubelet (built by `binaries.node_tools` from the same Kubernetes module as the
  bed's apiserver), cgroupfs driver on the host's cgroup v1 (`failCgroupV1: false`), no
  swap check, no QoS cgroups, joined to containerd's mount namespace (`nsenter`) where the
  six kernel settings it insists on (`vm.overcommit_memory`, `kernel.panic`, ...) read as
  it wants: it then leaves the host's real ones alone instead of rewriting them;
- pods on a bridge of their own, 198.19.255.0/24 (part of the RFC 2544 range the bed's
  other hosts use), with no default route: they reach only the bridge address, where
  `e2e.testbed.pod_gateway` answers `kubernetes.default` and relays to the apiserver.

The Node is registered with the `node-role.kubernetes.io/control-plane:NoSchedule` taint,
which Rancher's operation pods tolerate and ordinary pods do not; the caller decides what
else may land there. Images are never pulled: they are imported (`import_image`).

Needs root (namespaces, mounts, the bridge). `missing()` names what is absent.
Callers: e2e/test_rancher_app.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.processes import ManagedProcess, TestBedError, free_port, wait_for
from e2e.testbed.rancher_real import rss_mib

NODE_NAME = "herd-real-node"
BRIDGE = "herdnode0"
SUBNET = "198.19.255.0/24"
ADDRESS = "198.19.255.1"  # the bridge: node IP, cluster DNS and the apiserver relay
TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
CNI_DIR = Path("/usr/lib/cni")
# Debian package of each program this module runs (CNI plugins: a directory, not PATH).
PACKAGES = {"containerd": "containerd", "ctr": "containerd", "runc": "runc",
            "nsenter": "util-linux", "unshare": "util-linux"}  # fmt: skip
# What the kubelet's container manager wants of the kernel (it rewrites them otherwise).
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
START_TIMEOUT = 180.0
NAMESPACE = "k8s.io"  # containerd's namespace for CRI


def missing() -> list[str]:
    """Debian packages this node needs that are not installed (empty: all there)."""
    absent = {pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None}
    if not (CNI_DIR / "bridge").is_file():
        absent.add("containernetworking-plugins")
    return sorted(absent)


# containerd's mount namespace: a private /run, the kubelet's kernel settings as it wants
# them (bind mounts over /proc/sys files, seen only here), then containerd itself.
_CONTAINERD = """set -e
mount -t tmpfs -o mode=0755 herd-node-run /run
for entry in $HERD_TUNABLES; do
  mount --bind "$HERD_NODE_DIR/sysctl/$entry" "/proc/sys/$(echo "$entry" | tr . /)"
done
mkdir -p /var/log/containers && mount -t tmpfs herd-node-logs /var/log/containers
exec "$HERD_CONTAINERD" --config "$HERD_NODE_DIR/containerd.toml"
"""


class RealNode:
    """containerd + kubelet + the pod gateway; `start` returns once the Node is Ready."""

    def __init__(self, kubelet: Path, management: BedCluster, workdir: Path, image: str) -> None:
        self.kubelet_binary = kubelet
        self.management = management
        self.workdir = workdir
        self.sandbox_image = image
        self.socket = workdir / "containerd.sock"
        pids = workdir / "pids"
        self.containerd = ManagedProcess(
            "containerd", _containerd_argv(), workdir / "containerd.log", pids,
            {**os.environ, **self._containerd_env()}, tier=1, executable="unshare",
        )  # fmt: skip
        self.kubelet: ManagedProcess | None = None
        port = management.server.rsplit(":", 1)[-1]
        self.gateway = ManagedProcess(
            "pod-gateway",
            [sys.executable, "-m", "e2e.testbed.pod_gateway", "--address", ADDRESS,
             "--apiserver", port],
            workdir / "pod-gateway.log", pids, tier=1,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        self.ready_seconds = 0.0

    def start_runtime(self) -> None:
        """The bridge, the gateway and containerd (images can be imported after this)."""
        self._write_files()
        _bridge_up()
        self.gateway.start()
        self.containerd.start()
        wait_for("containerd's socket", self._serving, 60, [self.containerd])

    def start_kubelet(self) -> None:
        """The kubelet, in containerd's mount namespace; returns once the Node is Ready."""
        began = time.monotonic()
        assert self.containerd.pid is not None
        argv = [str(self.kubelet_binary), f"--mount=/proc/{self.containerd.pid}/ns/mnt", "--",
                str(self.kubelet_binary), *self._kubelet_flags()]  # fmt: skip
        self.kubelet = ManagedProcess("kubelet", argv, self.workdir / "kubelet.log",
                                      self.workdir / "pids", executable="nsenter")  # fmt: skip
        self.kubelet.start()
        wait_for(f"Node {NODE_NAME} Ready", self._ready, START_TIMEOUT,
                 [self.kubelet, self.containerd, self.gateway])  # fmt: skip
        self.ready_seconds = time.monotonic() - began

    def import_image(self, archive: Path) -> None:
        """Load an image archive (docker-archive or OCI) into containerd's CRI namespace."""
        self.ctr("images", "import", str(archive))

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """A container's log as the kubelet wrote it (CRI format, one line per write).

        Read from the node's disk: the apiserver would reach the kubelet by the Node's
        `Hostname` address first, a name nothing here resolves."""
        found = sorted((self.workdir / "pod-logs").glob(f"{namespace}_{pod}_*/{container}/*.log"))
        return "".join(path.read_text(errors="replace") for path in found)

    def ctr(self, *args: str, check: bool = True) -> str:
        """`ctr` on this node's containerd, in the CRI namespace."""
        command = ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
        if check and done.returncode:
            raise TestBedError(f"ctr {' '.join(args[:2])}: {done.stderr.strip()[-2000:]}")
        return done.stdout if done.returncode == 0 else ""

    def stop(self) -> None:
        """Stop every container, then the kubelet, containerd, its shims, the gateway."""
        if self.containerd.running():
            for task in self.ctr("tasks", "ls", "--quiet", check=False).split():
                self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        if self.kubelet is not None:
            self.kubelet.stop()
        self.containerd.stop()
        _kill_shims(self.socket)
        self.gateway.stop()
        _bridge_down()

    def overhead_mib(self) -> dict[str, float]:
        """Resident memory of the kubelet, containerd and its shims, in MiB."""
        shims = sum(rss_mib(pid) for pid in _shim_pids(self.socket))
        kubelet = rss_mib(self.kubelet.pid if self.kubelet else None)
        return {"kubelet": kubelet, "containerd": rss_mib(self.containerd.pid), "shims": shims}

    def _serving(self) -> bool:
        return bool(self.ctr("version", check=False))

    def _ready(self) -> bool:
        ready = 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
        out = kubectl(self.management, "get", "node", NODE_NAME, "-o", ready, check=False)
        return out.strip() == "True"

    def _containerd_env(self) -> dict[str, str]:
        return {
            "HERD_NODE_DIR": str(self.workdir),
            "HERD_CONTAINERD": shutil.which("containerd") or "containerd",
            "HERD_TUNABLES": " ".join(k.replace("/", ".") for k in KERNEL_TUNABLES),
        }

    def _write_files(self) -> None:
        for directory in ("sysctl", "cni", "cni-ipam", "kubelet", "pod-logs", "volume-plugins"):
            (self.workdir / directory).mkdir(parents=True, exist_ok=True)
        for key, value in KERNEL_TUNABLES.items():
            (self.workdir / "sysctl" / key.replace("/", ".")).write_text(value + "\n")
        (self.workdir / "containerd.toml").write_text(self._containerd_config())
        (self.workdir / "cni" / "10-herd-node.conflist").write_text(json.dumps(_cni_config(
            self.workdir / "cni-ipam"), indent=2))  # fmt: skip
        (self.workdir / "resolv.conf").write_text("")
        config = self._kubelet_config()
        (self.workdir / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _containerd_config(self) -> str:
        root = self.workdir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "{self.socket}"
[{cri}]
  sandbox_image = "{self.sandbox_image}"
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  # No CAP_SYS_RESOURCE in this sandbox: no oom_score_adj below containerd's own (-998).
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_DIR}"
  conf_dir = "{self.workdir / "cni"}"
  max_conf_num = 1
"""

    def _kubelet_config(self) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": ADDRESS,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            # Reached only from this machine, on the node's own bridge.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "clusterDNS": [ADDRESS],
            "clusterDomain": "cluster.local",
            "resolvConf": str(self.workdir / "resolv.conf"),
            "podLogsDir": str(self.workdir / "pod-logs"),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            "registerWithTaints": [TAINT],
            "maxPods": 10,
            # Other jobs fill this machine's disk and memory: no eviction for their sake.
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }

    def _kubelet_flags(self) -> list[str]:
        return [
            f"--config={self.workdir / 'kubelet.yaml'}",
            f"--kubeconfig={self.management.kubeconfig}",
            f"--root-dir={self.workdir / 'kubelet'}",
            f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={ADDRESS}",
            "--v=1",
        ]


def _containerd_argv() -> list[str]:
    # argv[0] is what finally runs (the pidfile's name); unshare runs first (`executable`).
    containerd = shutil.which("containerd") or "containerd"
    return [containerd, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            _CONTAINERD]  # fmt: skip


def _cni_config(ipam_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": "herd-node",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET, "gateway": ADDRESS}]],
                     "dataDir": str(ipam_dir), "routes": []},
        }],
    }  # fmt: skip


def _bridge_up() -> None:
    """The pods' bridge with the node's address, made before the gateway binds to it."""
    _bridge_down()
    for args in (["link", "add", BRIDGE, "type", "bridge"],
                 ["addr", "add", f"{ADDRESS}/24", "dev", BRIDGE],
                 ["link", "set", BRIDGE, "up"]):  # fmt: skip
        done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
        if done.returncode:
            raise TestBedError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _bridge_down() -> None:
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)


def _shim_pids(socket: Path) -> list[int]:
    """containerd's shims for this node: they name its socket on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"containerd-shim" in argv[0] and str(socket).encode() in argv:
            found.append(int(entry.name))
    return found


def _kill_shims(socket: Path) -> None:
    for pid in _shim_pids(socket):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
