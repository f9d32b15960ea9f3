"""A STAND-IN for Rancher's cluster proxy `/k8s/clusters/<id>`: not Rancher, only its rules
for impersonation, so that Herd's tenant identity can be tried the way Rancher would see it.

Role: a loopback HTTPS reverse proxy in front of the test bed's downstream API servers. A
Rancher kubeconfig Secret (`<cluster>-kubeconfig`, key `value`, as `e2e.testbed.rancher`
writes them) points at `https://127.0.0.1:<port>/k8s/clusters/<id>` with a Rancher-style
token (`token-xxxxx:<secret>`) that this proxy issued (`RancherProxy.issue_token`).

What it does, after rancher/rancher's `pkg/auth/requests/impersonate.go`,
`pkg/clusterrouter/proxy/proxy_server.go` and `pkg/impersonation/impersonation.go`:

- authenticates the caller by its bearer token (401 otherwise) as a Rancher user `u-...`;
- `Impersonate-User` naming anything but a ServiceAccount, or any `Impersonate-Group` /
  `Impersonate-Extra-*`: 403. Rancher accepts only its own Users (it sets up a downstream
  "impersonator account" from the user it finds among its Users), so `herd:tenant:N` with
  group `herd:tenants` cannot pass;
- `Impersonate-User: system:serviceaccount:<ns>:<name>`: checks with a SubjectAccessReview
  downstream that the caller may `impersonate` that ServiceAccount, mints a short-lived token
  for it with the TokenRequest API, drops the Impersonate headers and forwards the request
  with that token. The downstream API server then sees the ServiceAccount itself;
- no impersonation: forwards as the caller (the admin client certificate impersonating the
  Rancher user, who must be bound downstream: the test bed binds it to cluster-admin, as a
  cluster owner is in Rancher);
- streams responses (watches: helm 4 waits with them) and refuses upgrade requests (exec,
  port-forward: 501; Herd uses none).

What it leaves unproven: Rancher's own authentication and RBAC (its tokens, Users,
projects, the authorization of the impersonation by Rancher's roles rather than a
downstream SubjectAccessReview), the cluster agent tunnel, Rancher's token caching and
expiry, its error texts, and anything Rancher changes after the source read. A real Rancher
must still be tried.

Callers: `e2e/test_security_identity.py`. Runs in a thread of the test process with its own
event loop; `stop()` ends it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientPayloadError, ClientSession, ClientTimeout, TCPConnector, web
from yarl import URL

from e2e.testbed.certs import write_serving_pki
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.processes import free_port

PREFIX = "/k8s/clusters/"
SA_PREFIX = "system:serviceaccount:"
TOKEN_SECONDS = 600  # the shortest TokenRequest lifetime the API server accepts
_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}
_MAX_BODY = 32 * 1024 * 1024
# How long `stop()` lets in-flight requests finish. A watch whose client is gone (helm,
# killed with its controller) blocks its handler until the next event downstream, which
# may never come: aiohttp's default (60 s) held every teardown 30 s, the join's bound.
STOP_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class Forwarded:
    """One request the proxy handled: for tests to see who it went downstream as."""

    cluster: str
    method: str
    path: str
    caller: str
    impersonated: str  # the Impersonate-User header ("" without)
    status: int  # the proxy's own refusal, or the downstream answer


@dataclass
class RancherProxy:
    """The stand-in: `clusters` maps a Rancher cluster id to its test-bed control plane."""

    directory: Path
    clusters: Mapping[str, BedCluster]
    port: int = field(default_factory=free_port)
    log: list[Forwarded] = field(default_factory=list)
    minted: list[tuple[str, str]] = field(default_factory=list)  # (cluster, ServiceAccount)

    def __post_init__(self) -> None:
        self._tokens: dict[str, str] = {}  # bearer token -> Rancher user id
        self._sa_tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._allowed: dict[tuple[int, str, str, str], tuple[bool, float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self.pki = write_serving_pki(self.directory / "pki", "herd-testbed-rancher-proxy")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def issue_token(self, user: str = "u-herd") -> str:
        """A Rancher-style API token for `user` (`token-xxxxx:<52 characters>`)."""
        name = "token-" + secrets.token_hex(3)[:5]
        token = f"{name}:{secrets.token_urlsafe(39)[:52]}"
        self._tokens[token] = user
        return token

    def kubeconfig(self, cluster_id: str, token: str) -> str:
        """A kubeconfig as Rancher generates them: the proxy URL, its CA, the token."""
        ca = self.pki.ca.cert.read_text()
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": cluster_id,
                        "cluster": {
                            "server": f"{self.url}{PREFIX}{cluster_id}",
                            "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                        },
                    }
                ],
                "users": [{"name": cluster_id, "user": {"token": token}}],
                "contexts": [
                    {"name": cluster_id, "context": {"cluster": cluster_id, "user": cluster_id}}
                ],
                "current-context": cluster_id,
            }
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the Rancher proxy stand-in did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(30)

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._sessions = {cid: self._session(bed) for cid, bed in self.clusters.items()}
        # Requests with a minted token go without the client certificate: the API server
        # authenticates a certificate before a bearer token.
        self._bare = {cid: self._session(bed, admin=False) for cid, bed in self.clusters.items()}
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", PREFIX + "{cluster}/{path:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=STOP_GRACE_SECONDS)
        await runner.setup()
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(self.pki.serving.cert, self.pki.serving.key)
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=serving).start()
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            await runner.cleanup()
            for session in [*self._sessions.values(), *self._bare.values()]:
                await session.close()

    @staticmethod
    def _session(bed: BedCluster, *, admin: bool = True) -> ClientSession:
        """Downstream as the test bed's admin (client certificate, system:masters), or with
        no credentials of its own (`admin=False`: the caller sets a bearer token)."""
        context = ssl.create_default_context(cafile=str(bed.pki.ca.cert))
        if admin:
            pair = bed.pki.client("admin")
            context.load_cert_chain(pair.cert, pair.key)
        # auto_decompress off: bytes and Content-Encoding pass through unchanged.
        return ClientSession(
            base_url=bed.server,
            connector=TCPConnector(ssl=context),
            auto_decompress=False,
            timeout=ClientTimeout(total=None, sock_connect=10),
        )

    # -- requests -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        cluster = request.match_info["cluster"]
        path = request.rel_url.raw_path[len(PREFIX + cluster) :] or "/"
        caller = self._tokens.get(_bearer(request), "")
        impersonated = request.headers.get("Impersonate-User", "")
        if impersonated == caller:
            impersonated = ""  # acting as oneself is no impersonation

        def note(status: int) -> None:
            self.log.append(Forwarded(cluster, request.method, path, caller, impersonated, status))

        if cluster not in self._sessions:
            note(404)
            return _status(404, "NotFound", f"cluster {cluster} not found")
        if not caller:
            note(401)
            return _status(401, "Unauthorized", "must authenticate")
        if request.headers.get("Upgrade"):
            note(501)
            return _status(501, "NotImplemented", "upgrade requests are not in the stand-in")
        refusal = _refusal(request, caller)
        if refusal:
            note(403)
            return _status(403, "Forbidden", refusal)
        session = self._sessions[cluster]
        headers = _forward_headers(request)
        if impersonated:
            namespace, name = impersonated[len(SA_PREFIX) :].split(":", 1)
            if not await self._may_impersonate(session, caller, namespace, name):
                note(403)
                return _status(403, "Forbidden", "not allowed to impersonate serviceaccount")
            token = await self._sa_token(session, cluster, namespace, name)
            if token is None:
                note(500)
                return _status(500, "InternalError", "error getting service account token")
            headers["Authorization"] = f"Bearer {token}"
            session = self._bare[cluster]
        else:
            headers["Impersonate-User"] = caller
            headers["Impersonate-Group"] = "system:authenticated"
        status = await self._forward(request, session, path, headers)
        note(status.status)
        return status

    async def _forward(
        self, request: web.Request, session: ClientSession, path: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        body = await request.read() if request.body_exists else None
        url = URL.build(path=path, query_string=request.rel_url.raw_query_string, encoded=True)
        async with session.request(request.method, url, headers=headers, data=body) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            # A client gone, or a watch the API server cut (at teardown): end this response.
            with contextlib.suppress(ConnectionResetError, ClientPayloadError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)  # a watch event reaches helm at once
                await response.write_eof()
            return response

    async def _may_impersonate(
        self, session: ClientSession, caller: str, namespace: str, name: str
    ) -> bool:
        key = (id(session), caller, namespace, name)
        cached = self._allowed.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        allowed = await self._review(session, caller, namespace, name)
        self._allowed[key] = (allowed, time.monotonic() + 10)  # Rancher caches its reviews too
        return allowed

    @staticmethod
    async def _review(session: ClientSession, caller: str, namespace: str, name: str) -> bool:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": caller,
                "groups": ["system:authenticated"],
                "resourceAttributes": {
                    "verb": "impersonate",
                    "resource": "serviceaccounts",
                    "namespace": namespace,
                    "name": name,
                },
            },
        }
        async with session.post(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review
        ) as answer:
            found: dict[str, Any] = json.loads(await answer.read()) if answer.ok else {}
        return bool((found.get("status") or {}).get("allowed"))

    async def _sa_token(
        self, session: ClientSession, cluster: str, namespace: str, name: str
    ) -> str | None:
        cached = self._sa_tokens.get((cluster, f"{namespace}/{name}"))
        if cached and cached[1] > time.monotonic():
            return cached[0]
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS},
        }
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"
        async with session.post(path, json=request) as answer:
            if not answer.ok:
                return None
            token = str(json.loads(await answer.read())["status"]["token"])
        self._sa_tokens[(cluster, f"{namespace}/{name}")] = (
            token,
            time.monotonic() + TOKEN_SECONDS / 2,
        )
        self.minted.append((cluster, f"{namespace}/{name}"))
        return token


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _refusal(request: web.Request, caller: str) -> str:
    """Why Rancher would refuse this request's impersonation; "" when it would not."""
    user = request.headers.get("Impersonate-User", "")
    if request.headers.getall("Impersonate-Group", []):
        return "not allowed to impersonate group"
    if any(key.lower().startswith("impersonate-extra-") for key in request.headers):
        return "not allowed to impersonate extras"
    if not user or user == caller:
        return ""
    rest = user[len(SA_PREFIX) :] if user.startswith(SA_PREFIX) else ""
    namespace, _, name = rest.partition(":")
    if not (namespace and name) or ":" in name:
        return f"not allowed to impersonate user {user}: not a Rancher user"
    return ""


def _forward_headers(request: web.Request) -> dict[str, str]:
    return {
        key: value
        for key, value in request.headers.items()
        if key.lower() not in _HOP
        and key.lower() != "authorization"
        and not key.lower().startswith("impersonate-")
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    """A Kubernetes `Status` body, as clients expect from an API server (and Rancher sends)."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)
