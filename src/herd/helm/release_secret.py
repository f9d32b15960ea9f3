"""helm's release Secrets, read without a helm process: `read_release`, `decode_release`.

helm 3 and helm 4 store each release revision in a Secret `sh.helm.release.v1.<name>.v<N>`
(labels `owner=helm`, `name`, `version`, `status`), its `data.release` being base64 of
base64 of (usually) gzip of the release's JSON. Reading it directly costs one API read (two
for "the latest revision": a metadata-only list, then the one Secret), where `helm get
manifest` starts a process that lists and decodes every stored revision of the release.

A release Secret is data of whoever may write Secrets in the release's namespace, not
Herd's: `decode_release` treats it as hostile input (the decompressed size is capped, so a
gzip bomb stops at `RELEASE_LIMIT`; a malformed one raises `ReleaseDataError`), and what it
returns may feed a status, a warning or a drift comparison, never decide an admin write by
itself (`herd.plan.ownership.stored_verdict` vouches for a manifest first). Everything here
blocks: callers run it in a thread.

Callers: `herd.helm.client.ClusterHelm.manifest` (the add-on probe's and the GPU fit
warning's manifests), `herd.clusters.drift_api.release_manifest`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import zlib
from collections.abc import Mapping
from typing import Any, cast

from kubernetes.client.exceptions import ApiException

from herd.errors import TransientError
from herd.kube.core import CoreApi

RELEASE_LIMIT = 16 * 1024 * 1024  # bytes of a decompressed release (helm's own JSON)
TIMEOUT = 30
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_GZIP_MAGIC = b"\x1f\x8b"


class ReleaseDataError(TransientError, ValueError):
    """A release Secret that is not a release helm could read, or too large."""


def secret_name(name: str, revision: int) -> str:
    """The storage Secret of one revision, as helm's Secret driver names it."""
    return f"sh.helm.release.v1.{name}.v{revision}"


def decode_release(stored: str | bytes) -> dict[str, Any]:
    """A release Secret's `data.release` → the release object (manifest, info, …).

    Raises `ReleaseDataError` for anything that is not base64(base64(gzip?(JSON object)))
    or that decompresses beyond `RELEASE_LIMIT`.
    """
    try:
        raw = base64.b64decode(base64.b64decode(stored, validate=True), validate=True)
        if raw[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as unzipped:
                raw = unzipped.read(RELEASE_LIMIT + 1)
    except (binascii.Error, ValueError, OSError, EOFError, zlib.error):
        raise ReleaseDataError("the stored release is not readable") from None
    if len(raw) > RELEASE_LIMIT:
        raise ReleaseDataError("the stored release is too large")
    try:
        release = json.loads(raw)
    except ValueError:
        raise ReleaseDataError("the stored release is not readable") from None
    if not isinstance(release, dict):
        raise ReleaseDataError("the stored release is not readable")
    return cast(dict[str, Any], release)


def stored_manifest(release: Mapping[str, Any]) -> str:
    """The rendered manifest of a decoded release ("" when it has none)."""
    manifest = release.get("manifest")
    return manifest if isinstance(manifest, str) else ""


def read_release(
    core: CoreApi,
    namespace: str,
    name: str,
    revision: int | None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The decoded release at `revision` (None: the latest stored one), or None when it is
    not stored. `headers` go with every request (`Impersonate-User`). Raises the API
    client's errors and `ReleaseDataError`."""
    if revision is None:
        revision = latest_revision(core, namespace, name, headers)
        if revision is None:
            return None
    try:
        response = core.read_namespaced_secret(
            secret_name(name, revision),
            namespace,
            _preload_content=False,
            _request_timeout=TIMEOUT,
            _headers={"Accept": "application/json", **(headers or {})},
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    # Like helm's Secret driver, by name alone: the labels do not make a release.
    secret = json.loads(cast(Any, response).data)
    return decode_release((secret.get("data") or {}).get("release") or "")


def latest_revision(
    core: CoreApi,
    namespace: str,
    name: str,
    headers: Mapping[str, str] | None = None,
) -> int | None:
    """The highest stored revision of a release (one metadata-only list), as helm's
    `get` picks it; None when the release has none."""
    response = core.list_namespaced_secret(
        namespace,
        label_selector=f"owner=helm,name={name}",
        _preload_content=False,
        _request_timeout=TIMEOUT,
        _headers={"Accept": _METADATA_ONLY, **(headers or {})},
    )
    items = json.loads(cast(Any, response).data).get("items") or []
    revisions = [
        int(version)
        for item in items
        if str(version := ((item.get("metadata") or {}).get("labels") or {}).get("version", ""))
        .strip()
        .isdigit()
    ]
    return max(revisions, default=None)
