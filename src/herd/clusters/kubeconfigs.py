"""Kubeconfigs as files for helm: materialised from Secrets (or checked files), 0600 in a
private 0700 directory, reused while unchanged, rewritten on rotation, removed on close.
The directory is a temporary one, or a fixed one of the controller's work directory
(`herd.helm.workdir`): then kubeconfig files an earlier (crashed) run left there are removed
when the store opens.

Callers: `herd.clusters.inventory.Inventory.kubeconfig` (the engine asks it for each target cluster
before building that cluster's helm client); the operator and the CLI create one store per
process and `close()` it on shutdown. The path of a cluster's file stays the same across
rotations (the new content atomically replaces the old), so a helm client built on it keeps
working with the new credentials.

Nothing here logs, raises or returns kubeconfig content: errors are `ClusterUnavailable`
naming the cluster and the Secret or file, or `TransientError` when the API server fails.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.clusters.kubeconfig_yaml import (
    InvalidKubeconfig,
    absolutize_paths,
    parse_kubeconfig,
    refuse_plugins,
    select_context,
)
from herd.errors import TransientError
from herd.kube.client import API_ERRORS, FORBIDDEN, NOT_FOUND, api_error_summary, read_json
from herd.plan.clusters import Cluster, ClusterUnavailable, KubeconfigRef

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Written:
    location: KubeconfigRef  # where the content came from (without resource version)
    version: str  # Secret resourceVersion, or the file's mtime and size
    path: Path
    owned: bool  # a file of ours (False: the user's own file, used in place)


class KubeconfigStore:
    """One kubeconfig file per cluster id; safe for concurrent use on one event loop."""

    def __init__(
        self,
        api: client.ApiClient | None,
        directory: Path | None = None,
        *,
        allow_exec: bool = False,
    ) -> None:
        self._api = api
        # Whoever may write a kubeconfig Secret must not be able to run a program in Herd:
        # `exec` / `auth-provider` users in Secrets are refused unless an admin opts in
        # (HERD_ALLOW_EXEC_KUBECONFIGS). Files given to the CLI are its user's own.
        self._allow_exec = allow_exec
        if directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="herd-kubeconfigs-"))  # mode 0700
            self._created = True
        else:
            self._created = not directory.exists()
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)
            self._directory = directory
            # A fixed directory is this process's own: what a crashed run wrote goes now.
            for stale in [*directory.glob("*.kubeconfig"), *directory.glob(".writing-*")]:
                stale.unlink(missing_ok=True)
        self._written: dict[str, _Written] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False

    @property
    def directory(self) -> Path:
        return self._directory

    async def path(self, cluster: Cluster) -> Path:
        """A kubeconfig file for `cluster`, current with its Secret or file.

        Raises `ClusterUnavailable` (missing Secret or file, missing key, not a kubeconfig,
        unknown context) or `TransientError` (the API server failed).
        """
        if self._closed:
            raise RuntimeError("KubeconfigStore is closed")
        lock = self._locks.setdefault(cluster.id, asyncio.Lock())
        async with lock:
            return await asyncio.to_thread(self._materialise, cluster)

    def discard(self, cluster_id: str) -> None:
        """Remove a cluster's file (the cluster is gone)."""
        written = self._written.pop(cluster_id, None)
        if written is not None and written.owned:
            written.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove every file written and the directory (if the store created it)."""
        self._closed = True
        for cluster_id in list(self._written):
            self.discard(cluster_id)
        if self._created:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> KubeconfigStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- worker thread -------------------------------------------------------------------

    def _materialise(self, cluster: Cluster) -> Path:
        ref = cluster.kubeconfig
        try:
            if ref.is_secret:
                return self._from_secret(cluster, ref)
            return self._from_file(cluster, ref)
        except InvalidKubeconfig as error:
            self.discard(cluster.id)  # never keep serving a kubeconfig that went bad
            reason = f"the kubeconfig in {ref.describe()} {error}"
            raise ClusterUnavailable(cluster.id, reason) from None
        except ClusterUnavailable:
            self.discard(cluster.id)
            raise

    def _from_secret(self, cluster: Cluster, ref: KubeconfigRef) -> Path:
        known = self._reusable(cluster.id, ref.location, ref.resource_version)
        if known is not None:
            return known
        version, content = self._read_secret(cluster, ref)
        known = self._reusable(cluster.id, ref.location, version)
        if known is not None:
            return known
        document = parse_kubeconfig(content)
        if not self._allow_exec:
            refuse_plugins(document)
        selected = select_context(document, None)
        if selected is not None:
            content = yaml.safe_dump(selected, sort_keys=False).encode()
        previous = self._written.get(cluster.id)
        path = self._write(cluster.id, content)
        self._written[cluster.id] = _Written(ref.location, version, path, owned=True)
        if previous is not None and previous.location == ref.location:
            logger.info(
                "Kubeconfig of cluster %s changed (%s, resourceVersion %s -> %s); file rewritten",
                cluster,
                ref.describe(),
                previous.version,
                version,
            )
        return path

    def _read_secret(self, cluster: Cluster, ref: KubeconfigRef) -> tuple[str, bytes]:
        secret = f"Secret {ref.namespace}/{ref.name}"
        if self._api is None:
            raise ClusterUnavailable(cluster.id, f"no management cluster to read {secret} from")
        try:
            body = read_json(
                client.CoreV1Api(self._api).read_namespaced_secret, ref.name, ref.namespace
            )
        except ApiException as error:
            if error.status == NOT_FOUND:
                raise ClusterUnavailable(cluster.id, f"kubeconfig {secret} not found") from None
            if error.status == FORBIDDEN:
                raise ClusterUnavailable(cluster.id, f"not allowed to read {secret}") from None
            raise TransientError(f"cannot read {secret}: {api_error_summary(error)}") from None
        except API_ERRORS as error:
            raise TransientError(f"cannot read {secret}: {api_error_summary(error)}") from None
        data = body.pop("data", None) or {}
        encoded = data.get(ref.key)
        if not encoded:
            keys = ", ".join(sorted(data)) or "none"
            raise ClusterUnavailable(cluster.id, f"{secret} has no key {ref.key} (keys: {keys})")
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ClusterUnavailable(cluster.id, f"{ref.describe()} is not valid base64") from None
        return str((body.get("metadata") or {}).get("resourceVersion", "")), content

    def _from_file(self, cluster: Cluster, ref: KubeconfigRef) -> Path:
        assert ref.path is not None
        try:
            stat = ref.path.stat()
            version = f"{stat.st_mtime_ns}:{stat.st_size}"
            known = self._reusable(cluster.id, ref.location, version)
            if known is not None:
                return known
            content = ref.path.read_bytes()
        except OSError as error:
            reason = f"cannot read kubeconfig file {ref.path} ({error.strerror})"
            raise ClusterUnavailable(cluster.id, reason) from None
        selected = select_context(parse_kubeconfig(content), ref.context)
        if selected is None:
            self.discard(cluster.id)
            self._written[cluster.id] = _Written(ref.location, version, ref.path, owned=False)
            return ref.path
        selected = absolutize_paths(selected, ref.path.parent.absolute())
        path = self._write(cluster.id, yaml.safe_dump(selected, sort_keys=False).encode())
        self._written[cluster.id] = _Written(ref.location, version, path, owned=True)
        return path

    def _reusable(self, cluster_id: str, location: KubeconfigRef, version: str) -> Path | None:
        written = self._written.get(cluster_id)
        if (
            version
            and written is not None
            and written.location == location
            and written.version == version
            and written.path.exists()
        ):
            return written.path
        return None

    def _write(self, cluster_id: str, content: bytes) -> Path:
        target = self._directory / _file_name(cluster_id)
        # Something may have removed the directory (a second process at start, a cleanup):
        # make it again rather than fail every cluster from now on.
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600; the rename swaps content atomically for readers.
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".writing-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target


def _file_name(cluster_id: str) -> str:
    # Readable, yet distinct for ids that differ only in characters a file name cannot hold.
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", cluster_id)[:64]
    digest = hashlib.sha256(cluster_id.encode()).hexdigest()[:8]
    return f"{readable}-{digest}.kubeconfig"
