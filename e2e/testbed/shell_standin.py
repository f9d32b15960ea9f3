"""A stand-in for Rancher's shell image, which cannot be pulled here.

Role: Rancher runs each Apps-page operation in a pod (`helm-operation-*` in cattle-system,
rancher/rancher `pkg/catalogv2/helmop/operation.go`, with the `proxy` container and the
kubeconfig init container of rancher/steve `pkg/podimpersonation`), all three containers
from the image of its `shell-image` setting (rancher/shell:v0.8.1 in v2.15.0). What those
containers run of that image:

- `helm-cmd` (the operation): wait for the API through the pod's own `kubectl proxy`,
  then run helm once per `operationNNN` file of the mounted Secret, whose NUL-separated
  words are helm's arguments, printing each command and `SUCCESS: helm ...` after it;
- `sh -c "kubectl proxy --disable-filter || true"` (the `proxy` container);
- `sh -c "cp ..."` (the init container);

as user 1000 (`shell`, home /home/shell) with a read-only root filesystem.

This image gives exactly that from the test bed's own parts: the Debian base of the image
lane (`e2e.testbed.image`), the bed's Helm 4 (`binaries`) and the kubectl built from the
bed's Kubernetes module (`binaries.node_tools`), and a `helm-cmd` written here to do what
the one above does. It is not rancher/shell (a SUSE BCI base, their builds of helm and
kubectl, k9s, a shell environment), so it proves nothing about that image itself.

Callers: e2e/test_rancher_app.py (`build`, then `real_node.RealNode.import_image`).
"""

from __future__ import annotations

from pathlib import Path

from e2e.testbed import binaries, image

REFERENCE = "herd.local/rancher-shell-standin:v0.8.1"
SHELL_UID = 1000
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

HELM_CMD = """#!/bin/sh
# The operation of Rancher's helm-operation pod, as the test bed's shell stand-in runs it.
set -e
tries=0
until kubectl version >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 20 ]; then
        echo "Kubernetes API not reachable through the pod's proxy"
        exit 1
    fi
    echo "Waiting for Kubernetes API to be available"
    sleep 1
done
for operation in operation*; do
    xargs -0 echo helm < "$operation"
    xargs -0 helm < "$operation"
    echo
    echo "---------------------------------------------------------------------"
    xargs -0 echo SUCCESS: helm < "$operation"
    echo "---------------------------------------------------------------------"
done
"""

_USER = f"""set -e
echo 'shell:x:{SHELL_UID}:{SHELL_UID}:shell,,,:/home/shell:/bin/sh' >> /etc/passwd
echo 'shell:x:{SHELL_UID}:' >> /etc/group
mkdir -p /home/shell/.kube /home/shell/helm
chown -R {SHELL_UID}:{SHELL_UID} /home/shell
chmod 1777 /tmp
"""


def build(workdir: Path, kubectl: Path, log: bool = True) -> Path:
    """Build the stand-in (buildah, from the image lane's Debian base) and write it as a
    docker-archive for containerd; returns the archive. REFERENCE names it."""
    image.ensure_tools(log)
    base, _ = image.base_image(log)
    helm = binaries.ensure(log=False).helm
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "helm-cmd"
    script.write_text(HELM_CMD)
    container = image.run_step(["buildah", "from", "--quiet", base]).strip()
    try:
        for source, target in ((helm, "helm"), (kubectl, "kubectl"), (script, "helm-cmd")):
            image.run_step(["buildah", "copy", "--quiet", "--chmod", "0755", container,
                            str(source), f"/usr/local/bin/{target}"])  # fmt: skip
        image.run_step(["buildah", "run", "--isolation", "chroot", container, "--",
                        "/bin/sh", "-c", _USER])  # fmt: skip
        # The Cmd is what the pod sandbox runs: the same image serves as containerd's
        # sandbox ("pause") image, which cannot be pulled either.
        config = ["--user", str(SHELL_UID), "--workingdir", "/home/shell", "--env", f"PATH={PATH}"]
        sleep = '["/bin/sleep", "infinity"]'
        image.run_step(["buildah", "config", *config, "--cmd", sleep, container])
        image.run_step(["buildah", "commit", "--quiet", container, REFERENCE])
    finally:
        image.run_step(["buildah", "rm", container])
    archive = workdir / "shell-standin.tar"
    archive.unlink(missing_ok=True)
    image.run_step(["buildah", "push", "--quiet", REFERENCE,
                    f"docker-archive:{archive}:{REFERENCE}"])  # fmt: skip
    return archive
