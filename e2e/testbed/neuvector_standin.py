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
the server on loopback) and `e2e/test_addons.py` (through a downstream cluster's API
server service proxy). The API server refuses loopback endpoints (Endpoints validation),
so for the proxy the server runs as a child process in a network namespace of the test's
own (`e2e.testbed.netns`), started by `served()`:

    python -m e2e.testbed.neuvector_standin serve --host ADDR --port P \
        --password-file FILE [--images FILE]

`--images` is a JSON list of `CannedImage` fields. The child is driven over its stdin
and stdout, one JSON object a line each way: `{"op": "state"}` answers the request log
and the number of open sessions, `{"op": "add_image", "image": {...}}` adds a finished
scan, `{"op": "rescan_image", ...}` replaces an image's scan. End of input stops the
server; so a child whose parent died stops too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import ipaddress
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from e2e.testbed.standin_child import ChildStandIn, launch

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


# -- in a child process: `serve`, and its driver `served()` -------------------------------


class StandInProcess(ChildStandIn):
    """A stand-in served by a child process; the test's view of it, as of one in process."""

    what = "NeuVector stand-in"

    @property
    def requests(self) -> list[Request]:
        return [Request(**request) for request in self.ask({"op": "state"})["requests"]]

    @property
    def open_sessions(self) -> int:
        return int(self.ask({"op": "state"})["open_sessions"])

    def add_image(self, image: CannedImage) -> None:
        self.ask({"op": "add_image", "image": dataclasses.asdict(image)})

    def rescan_image(self, image: CannedImage) -> None:
        self.ask({"op": "rescan_image", "image": dataclasses.asdict(image)})

    def wait_until_answering(self, timeout: float) -> None:
        """Poll with a TLS handshake (no request, so the log stays clean) until it answers."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # any certificate: this only asks "up yet?"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise self.failure(f"exited with code {self.process.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    context.wrap_socket(sock).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise self.failure(f"not answering after {timeout:.0f}s") from None
                time.sleep(0.1)


@contextlib.contextmanager
def served(
    spawn: Callable[..., subprocess.Popen[str]],
    *,
    host: str,
    port: int,
    password: str,
    images: Sequence[CannedImage],
    workdir: Path,
    timeout: float = 30.0,
) -> Iterator[StandInProcess]:
    """Run `serve` through `spawn` (`subprocess.Popen`, or a namespace's), until exit.

    The password goes in a file of mode 0600, never on a command line (`ps` shows those).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "password"
    password_file.touch(mode=0o600)
    password_file.write_text(password)
    images_file = workdir / "images.json"
    images_file.write_text(json.dumps([dataclasses.asdict(image) for image in images]))
    log = workdir / "standin.log"
    argv = [
        sys.executable, "-m", "e2e.testbed.neuvector_standin", "serve",
        "--host", host, "--port", str(port),
        "--password-file", str(password_file), "--images", str(images_file),
    ]  # fmt: skip
    standin = StandInProcess(launch(spawn, argv, log), host, port, log)
    try:
        standin.wait_until_answering(timeout)
        yield standin
    finally:
        standin.stop()


def _drive(standin: NeuVectorStandIn, commands: TextIO, answers: TextIO) -> None:
    """Answer the driver's commands, one JSON object a line, until its input ends."""
    for line in commands:
        command = json.loads(line)
        answer: dict[str, Any]
        if command.get("op") == "state":
            answer = {
                "requests": [dataclasses.asdict(request) for request in standin.requests],
                "open_sessions": standin.open_sessions,
            }
        elif command.get("op") == "add_image":
            standin.add_image(CannedImage(**command["image"]))
            answer = {}
        elif command.get("op") == "rescan_image":
            standin.rescan_image(CannedImage(**command["image"]))
            answer = {}
        else:
            answer = {"error": f"unknown op {command.get('op')!r}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.testbed.neuvector_standin",
        description="Serve the NeuVector REST stand-in over HTTPS until stdin ends.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve; driven over stdin and stdout")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=10443)
    serve.add_argument("--username", default="admin")
    serve.add_argument("--password-file", type=Path, required=True)
    serve.add_argument("--images", type=Path, help="JSON list of CannedImage fields")
    args = parser.parse_args(argv)
    images = json.loads(args.images.read_text()) if args.images else []
    standin = NeuVectorStandIn(
        username=args.username,
        password=args.password_file.read_text(),
        images=[CannedImage(**image) for image in images],
    )
    with standin.start(host=args.host, port=args.port):
        _drive(standin, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
