"""Rancher's Apps page, as its requests: log in, a ClusterRepo, an install, its Operation.

Role: what the Rancher UI (rancher/dashboard) sends when a user adds a chart repository
under Apps > Repositories and installs a chart from it, sent here to a real Rancher
(`e2e.testbed.rancher_real.RancherServer`):

- `POST /v1-public/login` (local provider, the bootstrap admin) for a token;
- `PUT /v3/settings/<name>` (Global Settings) for the `shell-image` the operation runs;
- `POST /v1/catalog.cattle.io.clusterrepos` with the repository's URL;
- `POST /v1/catalog.cattle.io.clusterrepos/<repo>?action=install` with the chart, its
  values and the install options, and the `catalog.cattle.io/ui-source-repo*` annotations
  the UI adds; Rancher answers with the Operation it started
  (rancher/rancher `pkg/api/steve/catalog/types/rest.go`, `pkg/catalogv2/helmop`).

Tokens and passwords are kept in memory only and never printed.
Callers: e2e/test_rancher_app.py.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from e2e.testbed.rancher_real import RancherServer

TIMEOUT = 60


class RancherApiError(RuntimeError):
    """Rancher answered an API call with an error status (the message has its body)."""


@dataclass(frozen=True)
class Operation:
    namespace: str
    name: str


class RancherApi:
    """An admin session on a Rancher server's API, trusting its CA."""

    def __init__(self, server: RancherServer) -> None:
        self.url = server.url
        self.context = ssl.create_default_context(cafile=str(server.ca_file))
        login = {"type": "localProvider", "username": "admin",
                 "password": server.bootstrap_password, "responseType": "json"}  # fmt: skip
        self._token = str(self.call("POST", "/v1-public/login", login, auth=False)["token"])

    def call(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.context) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise RancherApiError(f"{method} {path}: HTTP {error.code}: {detail}") from None
        return json.loads(text) if text.strip() else {}

    def set_setting(self, name: str, value: str) -> None:
        self.call("PUT", f"/v3/settings/{name}", {"value": value})

    def add_cluster_repo(self, name: str, url: str) -> None:
        body = {"type": "catalog.cattle.io.clusterrepo", "metadata": {"name": name},
                "spec": {"url": url}}  # fmt: skip
        self.call("POST", "/v1/catalog.cattle.io.clusterrepos", body)

    def install(self, repo: str, body: dict[str, Any]) -> Operation:
        path = f"/v1/catalog.cattle.io.clusterrepos/{repo}?action=install"
        answer = self.call("POST", path, body)
        return Operation(str(answer["operationNamespace"]), str(answer["operationName"]))


def install_body(
    repo: str, chart: str, version: str, namespace: str, values: dict[str, Any]
) -> dict[str, Any]:
    """The body of the Apps page's install for one chart of a ClusterRepo, with the UI's
    defaults: wait on, a 600 s timeout, hooks and OpenAPI validation on, no project."""
    release = chart
    return {
        "charts": [{
            "chartName": chart,
            "version": version,
            "releaseName": release,
            "annotations": {"catalog.cattle.io/ui-source-repo-type": "cluster",
                            "catalog.cattle.io/ui-source-repo": repo},
            "values": values,
        }],
        "noHooks": False,
        "timeout": "600s",
        "wait": True,
        "namespace": namespace,
        "projectId": None,
        "disableOpenAPIValidation": False,
        "skipCRDs": False,
    }  # fmt: skip
