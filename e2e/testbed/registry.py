"""A real OCI registry on loopback (CNCF distribution) holding the fixture charts.

Role: run the `registry` binary the test bed builds (`e2e.testbed.binaries`) with
htpasswd (bcrypt) authentication and TLS from a private test CA
(`e2e.testbed.certs.write_serving_pki`), or in plain-HTTP mode, and push every fixture
chart into it with `helm push`. helm logs in through a registry config file (docker
`config.json` with `auths`) written 0600, never with a password on its command line.

Charts are at `oci://127.0.0.1:PORT/charts/<name>`; `Registry.repo` is that
`oci://…/charts` prefix, what a Stack's `charts[].repo` names.

Callers: `e2e/test_private_sources.py` (`Registry.start`), the demo
(`python -m e2e.testbed.registry serve …`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType

import bcrypt

from e2e.testbed import binaries, certs, chartrepo

USERNAME = "herd"
READY_SECONDS = 20.0


def write_htpasswd(path: Path, username: str, password: str) -> None:
    """An htpasswd file with one bcrypt entry (the only scheme distribution accepts)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    certs._write_secret(path, f"{username}:{hashed}\n".encode())


def write_registry_config(path: Path, host: str, username: str, password: str) -> None:
    """A docker `config.json` with basic-auth credentials for `host`, written 0600."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    certs._write_secret(path, json.dumps({"auths": {host: {"auth": auth}}}).encode())


def loopback_name() -> tuple[str, str]:
    """A host name for the registry and the loopback address it binds.

    Helm 3 talks plain HTTP to `localhost` and loopback IPs whatever the flags (containerd's
    `MatchLocalhost`), so a TLS registry needs another name: this machine's host name when
    it resolves to a loopback address (as /etc/hosts usually has it). Else 127.0.0.1,
    which only Helm 4 reaches over TLS.
    """
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return "127.0.0.1", "127.0.0.1"
    if address.startswith("127.") and name != "localhost":
        return name, address
    return "127.0.0.1", "127.0.0.1"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Registry:
    """A running registry; use as a context manager or call `stop`."""

    host: str  # host:port
    tls: bool
    username: str
    password: str = field(repr=False)
    ca: Path | None
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def repo(self) -> str:
        """The `charts[].repo` of the pushed fixture charts."""
        return f"oci://{self.host}/charts"

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        tls: bool = True,
        password: str | None = None,
        charts: Sequence[str] = (),
    ) -> Registry:
        """Start a registry under `workdir` (auth always on) and push the fixture charts
        (only the archives named in `charts`, e.g. `app-0.1.0`, when given: a push is a
        helm process each)."""
        workdir.mkdir(parents=True, exist_ok=True)
        password = password or secrets.token_urlsafe(18)
        write_htpasswd(workdir / "htpasswd", USERNAME, password)
        name, address = loopback_name() if tls else ("127.0.0.1", "127.0.0.1")
        pki = (
            certs.write_serving_pki(workdir / "pki", names=(name,), ips=(address,)) if tls else None
        )
        port = free_port(address)
        host = f"{name}:{port}"
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
            "http": {
                "addr": f"{address}:{port}",
                "secret": secrets.token_hex(16),
                **(
                    {"tls": {"certificate": str(pki.serving.cert), "key": str(pki.serving.key)}}
                    if pki
                    else {}
                ),
            },
            "auth": {"htpasswd": {"realm": "herd-testbed", "path": str(workdir / "htpasswd")}},
        }
        (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (workdir / "registry.log").open("wb")
        process = subprocess.Popen(
            [str(binaries.resolve().registry), "serve", str(workdir / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        registry = cls(
            host, tls, USERNAME, password, pki.ca.cert if pki else None, workdir, process
        )
        try:
            registry._wait_ready()
            registry.push_fixtures(charts)
        except BaseException:
            registry.stop()
            raise
        return registry

    def _wait_ready(self) -> None:
        scheme = "https" if self.tls else "http"
        context = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"registry exited: see {self.workdir / 'registry.log'}")
            try:
                urllib.request.urlopen(f"{scheme}://{self.host}/v2/", timeout=2, context=context)
                return
            except urllib.error.HTTPError as error:
                if error.code == 401:  # up, and asking for credentials
                    return
                raise
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"registry not up at {self.host}") from None
                time.sleep(0.1)

    def push_fixtures(self, charts: Sequence[str] = ()) -> None:
        """Package every fixture chart and `helm push` it (those named in `charts`, when
        given) to `oci://HOST/charts`."""
        repo = chartrepo.build_repository(self.workdir / "build")
        config = self.workdir / "helm-registry.json"
        write_registry_config(config, self.host, self.username, self.password)
        flags = [f"--registry-config={config}"]
        flags += [f"--ca-file={self.ca}"] if self.ca else ["--plain-http"]
        archives = sorted(repo.glob("*.tgz"))
        if charts:
            archives = [a for a in archives if a.name.removesuffix(".tgz") in charts]
            assert len(archives) == len(charts), f"not all of {charts} are fixture charts"
        for archive in archives:
            chartrepo.run_helm(["push", str(archive), self.repo, *flags], self.workdir / "helm")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _serve_until_signalled(workdir: Path, info_file: Path, tls: bool) -> None:
    """The registry and, with TLS, an HTTPS chart repository of the fixture charts with
    basic auth (same user, password and CA); `info_file` (0600) tells how to reach them."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with contextlib.ExitStack() as running:
        registry = running.enter_context(Registry.start(workdir, tls=tls))
        info = {
            "oci_repo": registry.repo,
            "username": registry.username,
            "password": registry.password,
            "ca": str(registry.ca or ""),
            "https_repo": "",
        }
        if tls:
            repo = running.enter_context(
                chartrepo.ChartRepo.serve(
                    workdir / "build" / "repo",
                    basic_auth=(registry.username, registry.password),
                    tls=certs.CertPair(
                        workdir / "pki" / "serving.crt", workdir / "pki" / "serving.key"
                    ),
                )
            )
            info["https_repo"] = repo.url
        partial = info_file.with_name(info_file.name + ".partial")
        partial.unlink(missing_ok=True)
        certs._write_secret(partial, json.dumps(info).encode())
        partial.replace(info_file)
        print(f"registry at {info['oci_repo']}, repository at {info['https_repo']}", flush=True)
        stopping.wait()
    info_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed.registry")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the registry (and the authenticated HTTPS repository) with the charts"
    )
    serve.add_argument("--dir", type=Path, required=True, help="work directory")
    serve.add_argument(
        "--info-file", type=Path, required=True, help="gets repos, username, password (0600)"
    )
    serve.add_argument("--plain-http", action="store_true", help="no TLS")
    args = parser.parse_args(argv)
    _serve_until_signalled(args.dir.resolve(), args.info_file, not args.plain_http)


if __name__ == "__main__":
    main()
