"""A stand-in for NeuVector's controller REST API: the four calls Herd makes, canned data.

NeuVector cannot run on the test bed (its enforcer needs a real container runtime), so
this small HTTPS server answers the way the real controller does (`neuvector/neuvector`
`controller/rest/rest.go` routes, `controller/api/apis.go` JSON shapes) for exactly the
calls `herd.addons.neuvector` makes, and nothing else:

| call | answer |
|---|---|
| `POST /v1/auth` | `{"token": {"token": ...}}`; 401 `{"code": 3, ...}` on a wrong password |
| `GET /v1/scan/status` | `{"status": {"scanned", "scheduled", "scanning", "failed", ...}}` |
| `GET /v1/scan/image` | `{"images": [RESTScanImageSummary...]}`: finished scans only |
| `DELETE /v1/auth` | ends the session |

Anything else is 404 `{"code": 1, ...}`; the scan calls without a live `X-Auth-Token` are
401. Every request is recorded (method, path, whether its token was live) so a test can
check the client logs in, uses its token and logs out.
Callers: `tests/test_addons_neuvector.py` (the contract test, in process, straight to
the server on loopback); `e2e.testbed.neuvector_child` serves it from a child process
for `e2e/test_addons.py`, `e2e/test_checks.py` and the demo (through a downstream
cluster's API server service proxy).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import shutil
import ssl
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN_HEADER = "X-Auth-Token"
CVEDB_VERSION = "3.812"
_ERR_NOT_FOUND, _ERR_UNAUTHORIZED = 1, 3


@dataclass(frozen=True)
class CannedImage:
    """One image's finished scan, as `GET /v1/scan/image` reports it."""

    image: str
    critical: int = 0
    high: int = 0
    medium: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "image_id": secrets.token_hex(32),
            "author": "",
            "created_at": "2024-01-01T00:00:00Z",
            "status": "finished",
            "critical": self.critical,
            "high": self.high,
            "medium": self.medium,
            "result": "",
            "scanned_timestamp": 1704067200,
            "scanned_at": "2024-01-01T00:00:00Z",
            "base_os": "alpine:3.19",
            "scanner_version": CVEDB_VERSION,
            "cvedb_create_time": "2024-01-01T00:00:00Z",
        }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    authorized: bool  # a live session token came with it


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: NeuVectorStandIn) -> None:
        self.standin = standin
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self._answer("POST")

    def do_GET(self) -> None:
        self._answer("GET")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        status, answer = self.server.standin.handle(
            method, path, body, self.headers.get(TOKEN_HEADER, "")
        )
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log keeps the record


class NeuVectorStandIn:
    """The server and its canned state; `start()` it, or use it as a context manager."""

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str,
        images: Sequence[CannedImage] = (),
        scheduled: int = 0,
        scanning: int = 0,
    ) -> None:
        self.username = username
        self.password = password
        self.images = list(images)
        self.scheduled = scheduled
        self.scanning = scanning
        self._lock = threading.Lock()
        self._tokens: set[str] = set()
        self._requests: list[Request] = []
        self._directory = Path(tempfile.mkdtemp(prefix="neuvector-standin-"))
        self.certificate = self._directory / "tls.crt"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> NeuVectorStandIn:
        key_file = self._write_certificate(host)
        server = _Server((host, port), self)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate, key_file)
        key_file.unlink()  # loaded; no private key lingers on disk
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"neuvector-standin:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> NeuVectorStandIn:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        assert self._server is not None, "not started"
        return str(self._server.server_address[0])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.certificate))

    # -- what happened --------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def open_sessions(self) -> int:
        with self._lock:
            return len(self._tokens)

    def add_image(self, image: CannedImage) -> None:
        """NeuVector has finished scanning one more image."""
        with self._lock:
            self.images.append(image)

    def rescan_image(self, image: CannedImage) -> None:
        """NeuVector scanned an image again (e.g. a new vulnerability database): its new
        result replaces the old one."""
        with self._lock:
            self.images[:] = [i for i in self.images if i.image != image.image] + [image]

    # -- the API --------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, body: bytes, token: str
    ) -> tuple[int, Mapping[str, Any]]:
        with self._lock:
            authorized = token in self._tokens
            self._requests.append(Request(method, path, authorized))
            if (method, path) == ("POST", "/v1/auth"):
                return self._login(body)
            if (method, path) == ("DELETE", "/v1/auth"):
                self._tokens.discard(token)
                return 200, {}
            if (method, path) not in (("GET", "/v1/scan/status"), ("GET", "/v1/scan/image")):
                return 404, _error(_ERR_NOT_FOUND, "URL not found")
            if not authorized:
                return 401, _error(_ERR_UNAUTHORIZED, "Authentication failed")
            if path == "/v1/scan/status":
                return 200, {"status": self._status()}
            return 200, {"images": [image.summary() for image in self.images]}

    def _login(self, body: bytes) -> tuple[int, Mapping[str, Any]]:
        try:
            credentials = json.loads(body).get("password") or {}
        except (ValueError, AttributeError):
            return 400, _error(6, "Request in wrong format")
        if (credentials.get("username"), credentials.get("password")) != (
            self.username,
            self.password,
        ):
            return 401, _error(_ERR_UNAUTHORIZED, "Authentication failed")
        token = secrets.token_hex(16)
        self._tokens.add(token)
        return 200, {
            "token": {
                "token": token,
                "global_permissions": [],
                "domain_permissions": {},
                "username": self.username,
                "role": "admin",
            },
            "password_days_until_expire": -1,
            "password_hours_until_expire": 0,
            "need_to_reset_password": False,
        }

    def _status(self) -> dict[str, Any]:
        return {
            "scanned": len(self.images),
            "scheduled": self.scheduled,
            "scanning": self.scanning,
            "failed": 0,
            "cvedb_version": CVEDB_VERSION,
            "cvedb_create_time": "2024-01-01T00:00:00Z",
        }

    def _write_certificate(self, host: str) -> Path:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "neuvector-standin")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        *{
                            x509.IPAddress(ipaddress.ip_address(address))
                            for address in ("127.0.0.1", host)
                        },
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file = self._directory / "tls.key"
        key_file.touch(mode=0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return key_file


def _error(code: int, text: str) -> dict[str, Any]:
    return {"code": code, "error": text, "message": text}
