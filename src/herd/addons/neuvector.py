"""A minimal NeuVector REST client, reached through the Kubernetes API service proxy.

Only what the Stack's status needs, from NeuVector's controller API (port 10443,
`X-Auth-Token` sessions), as found in `neuvector/neuvector` `controller/rest/rest.go`
and `controller/api/apis.go`:

| call | use |
|---|---|
| `POST /v1/auth` `{"password": {"username", "password"}}` | log in; `token.token` is the session |
| `GET /v1/scan/status` | `status.scheduled` + `status.scanning`: scans still to come |
| `GET /v1/scan/image` | `images[]`: per image with a finished scan, `critical`/`high`/`medium` |
| `DELETE /v1/auth` | log out (NeuVector limits concurrent sessions) |

`ServiceProxy` sends those requests through
`/api/v1/namespaces/<ns>/services/<scheme:service:port>/proxy/...` with a cluster's own
kubeconfig, so nothing needs a route into the cluster. `NeuVectorClient` takes any
`Transport`, which is how the contract test talks to the stand-in directly
(`e2e/testbed/neuvector_standin.py`). Everything here blocks: callers use a thread.

Errors are `NeuVectorError`s whose message is an HTTP status or an error class, never a
response body, a token or a password. Caller: `herd.addons.probe`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any, Protocol, cast

from kubernetes import client

from herd.addons.images import normalize
from herd.errors import TransientError
from herd.kube.client import API_ERRORS, api_error_summary
from herd.status.facts import ImageScan, ScanReport

TOKEN_HEADER = "X-Auth-Token"
_FINISHED = "finished"
_OK_MIN, _OK_MAX = 200, 299
_STATUS_TEXT = 200


class NeuVectorError(TransientError):
    """NeuVector could not be asked, or said no; the message is safe to show."""


class Transport(Protocol):
    """Send one JSON request to NeuVector's API; return the HTTP status and body."""

    def __call__(
        self, method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]: ...


class ServiceProxy:
    """A `Transport` through the API server's service proxy of one cluster."""

    def __init__(
        self, api: client.ApiClient, namespace: str, service: str, timeout: float = 10.0
    ) -> None:
        self._api = api
        self._base = f"/api/v1/namespaces/{namespace}/services/{service}/proxy"
        self._timeout = timeout

    def __call__(
        self, method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        request = self._api.param_serialize(
            method=method,
            resource_path=f"{self._base}/{path.lstrip('/')}",
            header_params={
                "Accept": "application/json",
                "Content-Type": "application/json",
                **headers,
            },
            body=dict(body) if body is not None else None,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*request, _request_timeout=self._timeout)
            data = cast(bytes, response.read())  # type: ignore[no-untyped-call]
        except API_ERRORS as error:
            raise NeuVectorError(api_error_summary(error)) from None
        return int(response.status), data


class NeuVectorClient:
    """One short session per `scan_report` call: log in, read, log out."""

    def __init__(self, transport: Transport, username: str, password: str) -> None:
        self._send = transport
        self._username = username
        self._password = password

    def scan_report(self) -> ScanReport:
        token = self._login()
        try:
            headers = {TOKEN_HEADER: token}
            status = self._json("GET", "/v1/scan/status", None, headers).get("status") or {}
            images = self._json("GET", "/v1/scan/image", None, headers).get("images") or []
        finally:
            self._logout(token)
        in_progress = _int(status.get("scheduled")) + _int(status.get("scanning"))
        return ScanReport(images=_image_scans(images), in_progress=in_progress)

    def _login(self) -> str:
        body = {"password": {"username": self._username, "password": self._password}}
        answer = self._json("POST", "/v1/auth", body, {})
        token = (answer.get("token") or {}).get("token")
        if not isinstance(token, str) or not token:
            raise NeuVectorError("login answer has no token")
        return token

    def _logout(self, token: str) -> None:
        # A failed logout costs nothing: the session expires on its own.
        with contextlib.suppress(NeuVectorError):
            self._send("DELETE", "/v1/auth", None, {TOKEN_HEADER: token})

    def _json(
        self, method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> dict[str, Any]:
        status, data = self._send(method, path, body, headers)
        if not _OK_MIN <= status <= _OK_MAX:
            raise NeuVectorError(f"{method} {path}: HTTP {status}{_error_code(data)}")
        try:
            parsed = json.loads(data)
        except ValueError:
            raise NeuVectorError(f"{method} {path}: answer is not JSON") from None
        if not isinstance(parsed, dict):
            raise NeuVectorError(f"{method} {path}: answer is not a JSON object")
        return parsed


def _image_scans(entries: Any) -> dict[str, ImageScan]:
    """Finished scans by normalized image; an image listed twice keeps its worst scan."""
    scans: dict[str, ImageScan] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            continue
        if entry.get("status", _FINISHED) != _FINISHED:
            continue
        scan = ImageScan(
            critical=_int(entry.get("critical")),
            high=_int(entry.get("high")),
            medium=_int(entry.get("medium")),
        )
        image = normalize(entry["image"])
        if image not in scans or scan.total > scans[image].total:
            scans[image] = scan
    return scans


def _error_code(data: bytes) -> str:
    """NeuVector's numeric error code (`{"code": 3, ...}`: never its free text), or the
    API server's own Status message (e.g. `no endpoints available for service ...`)."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(parsed, dict):
        return ""
    if isinstance(parsed.get("code"), int) and "error" in parsed:
        return f" (NeuVector error code {parsed['code']})"
    if parsed.get("kind") == "Status":
        text = str(parsed.get("message") or parsed.get("reason") or "")
        return f" ({text[:_STATUS_TEXT]})" if text else ""
    return ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0
