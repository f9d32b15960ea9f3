"""The small layer between `herd.clusters` and the synchronous `kubernetes` client.

Callers: the operator and the CLI build the management-cluster client with
`api_client_from_kubeconfig`; `herd.clusters.sources` and `herd.clusters.kubeconfigs` read
objects through `read_json` (from a worker thread: every call here blocks).

Responses are read raw (`_preload_content=False`) and parsed as JSON, so every body is the
same plain dict a kopf handler sees, and `api_error_summary` keeps error messages to the
HTTP status: an `ApiException`'s own text carries response headers and body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from urllib3.exceptions import HTTPError

# HTTP statuses the callers tell apart.
NOT_FOUND, FORBIDDEN = 404, 403
# The API groups Herd calls. The client imports each on first use, and CoreV1Api's module
# (every core model) costs seconds of CPU on a busy node: `load_apis` does it ahead.
APIS = (
    "CoreV1Api",
    "CustomObjectsApi",
    "RbacAuthorizationV1Api",
    "AppsV1Api",
    "ApiextensionsV1Api",
    "AuthenticationV1Api",
    "CoordinationV1Api",
)


def load_apis() -> None:
    """Import the client's API modules Herd uses (blocking; the operator's standby runs it
    in a thread, so the first pass after taking the Lease does not)."""
    for name in APIS:
        getattr(client, name)


def api_client_from_kubeconfig(path: Path | None = None) -> client.ApiClient:
    """A client for the cluster Herd runs against (the management cluster).

    `path` None: the in-cluster service account, else the default kubeconfig
    (`$KUBECONFIG`, `~/.kube/config`). Refreshed credentials are never written back.
    """
    if path is not None:
        return _from_file(str(path))
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException:
        return _from_file(None)
    return client.ApiClient(configuration)


def _from_file(path: str | None) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=path, persist_config=False
    )
    return api


def read_json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a generated API method and return the response body as a dict.

    Raises `ApiException` for non-2xx answers and urllib3's `HTTPError` when the API server
    cannot be reached; callers turn those into Herd errors with `api_error_summary`.
    """
    response = call(*args, _preload_content=False, **kwargs)
    try:
        body: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return body


def api_error_summary(error: Exception) -> str:
    """A short, content-free description of a failed API call."""
    if isinstance(error, ApiException):
        reason = f" {error.reason}" if error.reason else ""
        return f"HTTP {error.status}{reason}"
    if isinstance(error, HTTPError):
        return f"API server unreachable ({type(error).__name__})"
    return type(error).__name__


API_ERRORS: tuple[type[Exception], ...] = (ApiException, HTTPError, OSError)
"""What a call through the kubernetes client raises when the API server says no."""
