"""The few Kubernetes API calls the test bed makes itself, and kubeconfig files.

Callers: `e2e.testbed.controlplane` (readiness polling, fake nodes, kubeconfigs for the
admin and each component) and `e2e.testbed.helpers.api_get` (the tests' polling reads,
through `client_for(kubeconfig)`). Deliberately plain `http.client` + `ssl`: the test bed
has to work before and without the project's own Kubernetes client code, and these calls
are a few endpoints, not a client library.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from e2e.testbed.certs import CertPair

_REQUEST_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Response:
    status: int
    body: Any


class ApiClient:
    """Authenticated JSON requests against one apiserver, verified against its CA."""

    def __init__(
        self,
        server: str,
        ca: Path | str,
        client: CertPair | None = None,
        token: str | None = None,
    ) -> None:
        """`ca`: a CA file, or the PEM text itself (a kubeconfig's inlined data)."""
        parts = urlsplit(server)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 443
        if isinstance(ca, Path):
            self._context = ssl.create_default_context(cafile=str(ca))
        else:
            self._context = ssl.create_default_context(cadata=ca)
        if client is not None:
            self._context.load_cert_chain(str(client.cert), str(client.key))
        self._token = token

    def request(self, method: str, path: str, body: object = None) -> Response:
        connection = http.client.HTTPSConnection(
            self._host, self._port, context=self._context, timeout=_REQUEST_TIMEOUT_SECONDS
        )
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            if payload is not None:
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Response(response.status, parsed)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, body: object) -> Response:
        return self.request("POST", path, body)

    def try_get(self, path: str) -> Response | None:
        """GET `path`, or None while the server cannot be reached (for polling)."""
        try:
            return self.get(path)
        except (OSError, http.client.HTTPException):
            return None

    def ok(self, path: str) -> bool:
        """True when GET `path` answers 200; connection errors mean "not yet"."""
        response = self.try_get(path)
        return response is not None and response.status == 200


_CLIENTS: dict[tuple[Path, int], ApiClient] = {}


def client_for(kubeconfig: Path) -> ApiClient:
    """An ApiClient with a kubeconfig's server, CA and user (inlined client certificate, or
    token), as kubectl would use them; one per file version. The certificate and key go to
    a private temporary directory, since `ssl` loads a certificate chain only from files."""
    key = (kubeconfig.resolve(), kubeconfig.stat().st_mtime_ns)
    if key not in _CLIENTS:
        config = yaml.safe_load(kubeconfig.read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
        cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
        user = next(u for u in config["users"] if u["name"] == context["context"]["user"])["user"]
        ca = base64.b64decode(cluster["cluster"]["certificate-authority-data"]).decode()
        client = None
        if "client-certificate-data" in user:
            directory = Path(tempfile.mkdtemp(prefix="herd-e2e-client-"))
            client = CertPair(directory / "client.crt", directory / "client.key")
            for path, field in (
                (client.cert, "client-certificate-data"),
                (client.key, "client-key-data"),
            ):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(base64.b64decode(user[field]))
        _CLIENTS[key] = ApiClient(cluster["cluster"]["server"], ca, client, user.get("token"))
    return _CLIENTS[key]


def write_kubeconfig(
    path: Path, cluster: str, server: str, ca: Path, client: CertPair, user: str
) -> Path:
    """Write a self-contained kubeconfig (certificates inlined), mode 0600.

    Inlined rather than referencing files so the kubeconfig can be copied into a
    Secret or another machine's tests as one document, the way Rancher hands them out.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": _b64(ca),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a reader polling for the file never sees half of it.
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    partial.replace(path)
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
