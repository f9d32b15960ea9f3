"""Count the HTTP requests a kubernetes `ApiClient` really sends.

Role: a test hands Herd a management-cluster client wrapped by `RequestLog`; every request
the generated API methods make goes through `rest_client.request`, which the log records
(method, path, query, whether it asked for metadata only, and how many items a list
answered). Requests are sent unchanged: nothing is answered from here, the requests reach
the real API server.

Callers: `e2e/test_inventory_cache.py`. (The scale benchmark, whose controller is another
process, counts from the management API server's audit log instead.)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from kubernetes import client
from kubernetes.client import rest


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    metadata_only: bool
    items: int = -1  # how many objects a list answered (-1: not a list, or not JSON)

    @property
    def is_secret_get(self) -> bool:
        """A GET of one Secret (not a list)."""
        parts = self.path.strip("/").split("/")
        return self.method == "GET" and len(parts) == 6 and parts[4] == "secrets"


class RequestLog:
    """Records every request `api` sends from now on."""

    def __init__(self, api: client.ApiClient) -> None:
        self.requests: list[Request] = []
        rest = api.rest_client
        send: Callable[..., Any] = rest.request

        def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(url)
            accept = str((kwargs.get("headers") or {}).get("Accept", ""))
            query = tuple(parse_qsl(parts.query))
            request = Request(method, parts.path, query, "PartialObjectMetadata" in accept)
            # Recorded in the order sent (sources list concurrently), completed on answer.
            index = len(self.requests)
            self.requests.append(request)
            response = send(method, url, *args, **kwargs)
            self.requests[index] = dataclasses.replace(request, items=_items(response))
            return response

        rest.request = counted

    def since(self, mark: int) -> list[Request]:
        return self.requests[mark:]

    def mark(self) -> int:
        return len(self.requests)


def _items(response: Any) -> int:
    try:
        # Both keep the body for the caller: the client's RESTResponse loads it on read(),
        # urllib3's response (for `_preload_content=False`) caches it on `.data`.
        data = response.read() if isinstance(response, rest.RESTResponse) else response.data
        body = json.loads(data or b"null")
    except ValueError:
        return -1
    items = body.get("items") if isinstance(body, dict) else None
    return len(items) if isinstance(items, list) else -1
