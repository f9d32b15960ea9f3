"""Decoding helm's release Secrets as hostile data (`herd.helm.release_secret`)."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from herd.helm.release_secret import (
    RELEASE_LIMIT,
    ReleaseDataError,
    decode_release,
    secret_name,
    stored_manifest,
)


def stored(raw: bytes, *, zipped: bool = True) -> str:
    """As helm's Secret driver stores a release (the API server adds the outer base64)."""
    body = gzip.compress(raw, mtime=0) if zipped else raw
    return base64.b64encode(base64.b64encode(body)).decode()


@pytest.mark.parametrize("zipped", [True, False])
def test_a_stored_release_decodes_to_its_object(zipped: bool) -> None:
    release = {"name": "web", "version": 3, "manifest": "---\nkind: ConfigMap\n"}
    decoded = decode_release(stored(json.dumps(release).encode(), zipped=zipped))
    assert decoded == release
    assert stored_manifest(decoded) == "---\nkind: ConfigMap\n"


def test_a_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"[" + b" " * (RELEASE_LIMIT + 10) + b"]")
    assert len(bomb) < RELEASE_LIMIT // 100  # small on the wire, huge unpacked
    with pytest.raises(ReleaseDataError, match="too large"):
        decode_release(base64.b64encode(base64.b64encode(bomb)))


@pytest.mark.parametrize(
    "data",
    [
        "not base64!",
        base64.b64encode(b"not base64 either!").decode(),
        stored(b"{not json"),
        stored(b'["a list, not a release"]'),
        stored(b"\x1f\x8bnot really gzip", zipped=False),
        "",
    ],
)
def test_what_is_not_a_release_is_refused(data: str) -> None:
    with pytest.raises(ReleaseDataError):
        decode_release(data)


def test_a_release_without_a_manifest_has_an_empty_one() -> None:
    assert stored_manifest({"manifest": None}) == ""
    assert stored_manifest({"manifest": ["not", "text"]}) == ""


def test_the_storage_secret_is_named_as_helm_names_it() -> None:
    assert secret_name("web", 12) == "sh.helm.release.v1.web.v12"
