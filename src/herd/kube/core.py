"""The core/v1 requests on the CLI's and the rollout's paths, without the generated `CoreV1Api`.

`kubernetes.client.CoreV1Api` is one 63,000-line module whose ~400 methods are built with
pydantic annotations when it is imported: about 0.4 CPU-s (0.9 s on a loaded machine), in
every process that touches it, a third of what `herd apply` of three small charts spent
outside helm (issue 26). `CoreApi` sends the same requests through the same `ApiClient`
(its configuration: server, TLS, credentials with exec plugins and token refresh, proxy,
user agent; path parameters quoted as the generated client quotes them) and keeps the
generated client's conventions Herd relies on: the method names and arguments Herd calls,
`_headers` as the request's headers, `_request_timeout`, and any non-2xx answer raised as
`ApiException`. It always returns urllib3's response with its body read (what
`_preload_content=False` returned; no caller deserialises a model), and sends bodies as JSON.

Callers: `herd.kube.owned`, `herd.kube.lastgood` (record ConfigMaps), `herd.helm.client` and
`herd.helm.release_secret` (helm's release Secrets, Nodes).
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

_NAMESPACED = "/api/v1/namespaces/{namespace}"


class CoreApi:
    """The core/v1 calls Herd makes, on one `ApiClient` (closed by its owner)."""

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client

    def read_namespaced_config_map(self, name: str, namespace: str, **options: Any) -> Any:
        path = _NAMESPACED + "/configmaps/{name}"
        return self._call("GET", path, {"namespace": namespace, "name": name}, **options)

    def replace_namespaced_config_map(
        self, name: str, namespace: str, body: Any, **options: Any
    ) -> Any:
        path = _NAMESPACED + "/configmaps/{name}"
        params = {"namespace": namespace, "name": name}
        return self._call("PUT", path, params, body=body, **options)

    def create_namespaced_config_map(self, namespace: str, body: Any, **options: Any) -> Any:
        path = _NAMESPACED + "/configmaps"
        return self._call("POST", path, {"namespace": namespace}, body=body, **options)

    def delete_namespaced_config_map(self, name: str, namespace: str, **options: Any) -> Any:
        path = _NAMESPACED + "/configmaps/{name}"
        return self._call("DELETE", path, {"namespace": namespace, "name": name}, **options)

    def create_namespace(self, body: Any, *, field_manager: str = "", **options: Any) -> Any:
        query = [("fieldManager", field_manager)] if field_manager else []
        return self._call("POST", "/api/v1/namespaces", {}, body=body, query=query, **options)

    def ensure_namespace(
        self, name: str, labels: dict[str, str] | None = None, **options: Any
    ) -> None:
        """The namespace `name` created with `labels` when it is missing ("already exists"
        is success; its labels are then left as they are); any other answer raised."""
        metadata: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        try:
            self.create_namespace(body, **options)
        except ApiException as error:
            if error.status != 409:
                raise

    def read_namespaced_secret(self, name: str, namespace: str, **options: Any) -> Any:
        path = _NAMESPACED + "/secrets/{name}"
        return self._call("GET", path, {"namespace": namespace, "name": name}, **options)

    def list_namespaced_secret(
        self, namespace: str, *, label_selector: str | None = None, **options: Any
    ) -> Any:
        query = [("labelSelector", label_selector)] if label_selector else []
        path = _NAMESPACED + "/secrets"
        return self._call("GET", path, {"namespace": namespace}, query=query, **options)

    def list_secret_for_all_namespaces(
        self, *, label_selector: str | None = None, **options: Any
    ) -> Any:
        query = [("labelSelector", label_selector)] if label_selector else []
        return self._call("GET", "/api/v1/secrets", {}, query=query, **options)

    def list_node(self, **options: Any) -> Any:
        return self._call("GET", "/api/v1/nodes", {}, **options)

    def _call(
        self,
        method: str,
        path: str,
        path_params: dict[str, str],
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        _headers: dict[str, str] | None = None,
        _request_timeout: Any = None,
        _preload_content: bool = False,  # accepted; the body is always read (see the module)
    ) -> Any:
        headers = dict(_headers or {})
        headers.setdefault("Accept", "application/json")
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        request = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request, _request_timeout=_request_timeout)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response
