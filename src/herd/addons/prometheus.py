"""Instant PromQL queries against a downstream cluster's Prometheus, bounded in time and size.

Where a cluster's Prometheus is (`locate`), in this order:

1. a URL on the cluster object: the annotation `herd.suse.com/prometheus-url`
   (`herd.names.PROMETHEUS_URL_ANNOTATION`) on the Rancher provisioning Cluster or the
   kubeconfig Secret (or `prometheusUrl` of a CLI clusters-file entry), read into
   `Cluster.prometheus_url`: `PrometheusUrl`, reached directly from Herd's pod (http or
   https, no credentials in the URL);
2. else a Service, reached through the cluster's API server service proxy with the
   cluster's own kubeconfig, as the DCGM figures are (`herd.addons.gpu.probe`):
   `PrometheusService`, by default `HERD_PROMETHEUS_SERVICE`
   (`herd.settings.Settings.prometheus_service`, `[scheme:]namespace/name:port`; Rancher
   Monitoring's `cattle-monitoring-system/rancher-monitoring-prometheus:9090`).

The interface (the metric checks call it; later changes stay compatible):

    service = PrometheusService.parse(settings.prometheus_service)   # PermanentError if bad
    location = locate(cluster, service)          # PrometheusUrl | PrometheusService
    client = PrometheusClient(timeout=10.0, max_bytes=1 << 20, max_series=1000)
    result = client.query(location, promql, kubeconfig=path, at=None)   # blocks: a thread
    result = await client.query_async(location, promql, kubeconfig=path, at=None)
    result.kind        # "vector" | "scalar"
    result.series      # tuple[Series(labels: Mapping[str, str], value: float, at: float)]
    result.values()    # [float, ...] in Prometheus's order
    result.single()    # float | None: the one value; None for an empty vector;
                       # QueryError when the query returned more than one series
    result.warnings    # tuple[str, ...]: Prometheus's warnings and infos, capped

`kubeconfig` is needed only for a `PrometheusService`; `at` is the evaluation time (Unix
seconds; None: now). Errors are `herd.errors.HerdError`s whose messages are safe for a
status row: never a kubeconfig, a token or a URL's query string.

- `QueryError` (`PermanentError`): Prometheus refused the query (`bad_data`, e.g. a PromQL
  syntax error, or an `execution` error), the query is longer than `MAX_QUERY`, or its
  result is not an instant vector or scalar of floats; `.error_type` says which.
- `PrometheusUnavailable` (`TransientError`): not reachable, an HTTP error (the service
  proxy's "no endpoints available" among them), a Prometheus timeout, the time or size
  limit, or an answer that is not Prometheus's JSON.

Bounds: one deadline of `timeout` seconds for the whole call (connect, headers, body read
in chunks), also sent to Prometheus as its own query `timeout`; at most `max_bytes` of
body (a larger `Content-Length` is refused unread); at most `max_series` series. The
parse of at most `max_bytes` of JSON happens in the calling thread, which
`query_async` keeps off the event loop (`asyncio.to_thread`, with a `wait_for` bound).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import urllib3

from herd.errors import PermanentError, TransientError
from herd.kube.client import API_ERRORS, api_error_summary
from herd.kube.shared import KubeconfigUnusable, kubeconfig_client
from herd.plan.clusters import Cluster
from herd.settings import Settings

QUERY_PATH = "/api/v1/query"
DEFAULT_SERVICE = Settings.prometheus_service
MAX_QUERY = 4096
_TEXT = 200  # characters of Prometheus's own error or warning text kept
_WARNINGS = 5
_CHUNK = 64 * 1024
_OK_MIN, _OK_MAX = 200, 299
_BAD_REQUEST, _UNPROCESSABLE = 400, 422
# A DNS-1123 label (namespace, Service name) and a port: a number or an IANA port name.
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}|[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")
_SERVICE = re.compile(r"(?:(?P<scheme>https?):)?(?P<namespace>[^/]+)/(?P<name>[^:]+):(?P<port>.+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
ResultKind = Literal["vector", "scalar"]


class PrometheusUnavailable(TransientError):
    """The cluster's Prometheus could not be asked, or did not answer usably."""


class QueryError(PermanentError):
    """Prometheus refused the query, or its result is not a vector or scalar of floats."""

    def __init__(self, message: str, error_type: str = "bad_data") -> None:
        self.error_type = error_type
        super().__init__(message)


@dataclass(frozen=True)
class PrometheusService:
    """A Prometheus Service, reached through the cluster's API server service proxy."""

    namespace: str
    name: str
    port: str = "9090"  # a number or a port name
    scheme: Literal["http", "https"] = "http"

    @classmethod
    def parse(cls, text: str) -> PrometheusService:
        """`[scheme:]namespace/name:port`; `PermanentError` naming what is wrong."""
        found = _SERVICE.fullmatch(text.strip())
        if found is None:
            raise PermanentError(
                f"Prometheus Service {text!r}: expected [http:|https:]namespace/name:port"
            )
        namespace, name, port = found["namespace"], found["name"], found["port"]
        for what, value, pattern in (
            ("namespace", namespace, _LABEL),
            ("name", name, _LABEL),
            ("port", port, _PORT),
        ):
            if not pattern.fullmatch(value):
                raise PermanentError(f"Prometheus Service {text!r}: {what} {value!r} is invalid")
        scheme: Literal["http", "https"] = "https" if found["scheme"] == "https" else "http"
        return cls(namespace, name, port, scheme)

    def proxy_path(self) -> str:
        service = f"{self.scheme}:{self.name}:{self.port}"
        return f"/api/v1/namespaces/{self.namespace}/services/{service}/proxy{QUERY_PATH}"

    def describe(self) -> str:
        return f"Prometheus Service {self.namespace}/{self.name}:{self.port}"


@dataclass(frozen=True)
class PrometheusUrl:
    """A Prometheus reached directly at its base URL (`http(s)://host[:port][/prefix]`)."""

    url: str

    @classmethod
    def parse(cls, text: str) -> PrometheusUrl:
        """Check a URL; `PermanentError` that never repeats the URL (it may hold a secret)."""
        try:
            parts = urlsplit(text.strip())
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise PermanentError("Prometheus URL is not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PermanentError("Prometheus URL must be http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            raise PermanentError("Prometheus URL must not hold credentials")
        if parts.query or parts.fragment:
            raise PermanentError("Prometheus URL must not have a query or fragment")
        return cls(parts.geturl().rstrip("/"))

    def describe(self) -> str:
        return f"Prometheus {self.url}"


PrometheusLocation = PrometheusService | PrometheusUrl


def locate(cluster: Cluster, service: PrometheusService) -> PrometheusLocation:
    """The cluster's own URL when its object names one, else `service` through its proxy."""
    if cluster.prometheus_url:
        return PrometheusUrl.parse(cluster.prometheus_url)
    return service


@dataclass(frozen=True)
class Series:
    """One sample of a result: its labels (`__name__` included when kept), value, time."""

    labels: Mapping[str, str]
    value: float
    at: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))


@dataclass(frozen=True)
class QueryResult:
    kind: ResultKind
    series: tuple[Series, ...]
    warnings: tuple[str, ...] = field(default=())

    def values(self) -> list[float]:
        return [s.value for s in self.series]

    def single(self) -> float | None:
        """The one value; None when the vector is empty; `QueryError` for several."""
        if not self.series:
            return None
        if len(self.series) > 1:
            raise QueryError(
                f"query returned {len(self.series)} series, expected one: aggregate it "
                "(e.g. sum(...) or max(...))",
                error_type="many_series",
            )
        return self.series[0].value


class PrometheusClient:
    """Runs instant queries; one per process is enough (it pools direct connections)."""

    def __init__(
        self, *, timeout: float = 10.0, max_bytes: int = 1 << 20, max_series: int = 1000
    ) -> None:
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_series = max_series
        self._pool = urllib3.PoolManager(retries=False, maxsize=4)

    def query(
        self,
        location: PrometheusLocation,
        promql: str,
        *,
        kubeconfig: Path | None = None,
        at: float | None = None,
    ) -> QueryResult:
        """Evaluate `promql` now (or `at`); blocks, so callers use a thread."""
        if len(promql) > MAX_QUERY:
            raise QueryError(f"query is longer than {MAX_QUERY} characters")
        deadline = time.monotonic() + self._timeout
        params = {"query": promql, "timeout": f"{self._timeout:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        where = location.describe()
        if isinstance(location, PrometheusUrl):
            status, body = self._direct(location, params, deadline, where)
        else:
            status, body = self._proxied(location, params, kubeconfig, deadline, where)
        return parse_answer(status, body, where, self._max_series)

    async def query_async(
        self,
        location: PrometheusLocation,
        promql: str,
        *,
        kubeconfig: Path | None = None,
        at: float | None = None,
    ) -> QueryResult:
        """`query` in a worker thread; the event loop only waits for it."""
        call = asyncio.to_thread(self.query, location, promql, kubeconfig=kubeconfig, at=at)
        try:
            # The thread keeps its own deadline; this bound is for a stuck resolver.
            return await asyncio.wait_for(call, self._timeout + 5.0)
        except TimeoutError:
            raise PrometheusUnavailable(
                f"{location.describe()}: no answer in {self._timeout:g}s"
            ) from None

    def _direct(
        self, location: PrometheusUrl, params: Mapping[str, str], deadline: float, where: str
    ) -> tuple[int, bytes]:
        url = f"{location.url}{QUERY_PATH}?{urlencode(params)}"
        try:
            response = self._pool.request(
                "GET",
                url,
                headers={"Accept": "application/json"},
                preload_content=False,
                redirect=False,
                timeout=urllib3.Timeout(total=_left(deadline, where)),
            )
        except urllib3.exceptions.HTTPError as error:
            raise PrometheusUnavailable(f"{where}: unreachable ({type(error).__name__})") from None
        return int(response.status), self._body(response, deadline, where)

    def _proxied(
        self,
        location: PrometheusService,
        params: Mapping[str, str],
        kubeconfig: Path | None,
        deadline: float,
        where: str,
    ) -> tuple[int, bytes]:
        if kubeconfig is None:
            raise PrometheusUnavailable(f"{where}: no kubeconfig to reach it through")
        try:
            with kubeconfig_client(kubeconfig) as api:
                request = api.param_serialize(
                    method="GET",
                    resource_path=location.proxy_path(),
                    query_params=list(params.items()),
                    header_params={"Accept": "application/json"},
                    auth_settings=["BearerToken"],
                )
                response = api.call_api(*request, _request_timeout=_left(deadline, where))
                return int(response.status), self._body(response.response, deadline, where)
        except KubeconfigUnusable as error:  # its text names the error class, never content
            raise PrometheusUnavailable(f"{where}: {error}") from None
        except API_ERRORS as error:
            raise PrometheusUnavailable(f"{where}: {api_error_summary(error)}") from None

    def _body(self, response: Any, deadline: float, where: str) -> bytes:
        """At most `max_bytes` of the body, read in chunks before `deadline`."""
        try:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > self._max_bytes:
                raise self._too_large(where)
            chunks: list[bytes] = []
            size = 0
            while True:
                _left(deadline, where)
                chunk = response.read1(_CHUNK)  # what one receive brings: no waiting for more
                if not chunk:
                    response.release_conn()  # read to the end: the connection is reusable
                    return b"".join(chunks)
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._too_large(where)
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
            raise PrometheusUnavailable(
                f"{where}: answer cut off ({type(error).__name__})"
            ) from None
        finally:
            response.close()  # a no-op after the release; else its unread rest is dropped

    def _too_large(self, where: str) -> PrometheusUnavailable:
        return PrometheusUnavailable(f"{where}: answer larger than {self._max_bytes} bytes")


def parse_answer(status: int, body: bytes, where: str, max_series: int = 1000) -> QueryResult:
    """Prometheus's answer to `/api/v1/query` (HTTP `status`, JSON `body`) as a result or
    the error it stands for. Pure."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("status") not in ("success", "error"):
        raise PrometheusUnavailable(f"{where}: HTTP {status}{_kube_status(answer)}")
    if answer["status"] == "error" or not _OK_MIN <= status <= _OK_MAX:
        error_type = str(answer.get("errorType") or "unknown")
        text = _text(answer.get("error"))
        message = f"{where}: {error_type}: {text}" if text else f"{where}: HTTP {status}"
        if error_type in ("bad_data", "execution") or status in (_BAD_REQUEST, _UNPROCESSABLE):
            raise QueryError(message, error_type=error_type)
        raise PrometheusUnavailable(message)
    data = answer.get("data")
    if not isinstance(data, dict):
        raise PrometheusUnavailable(f"{where}: answer has no data")
    warnings = tuple(
        _text(w) for w in [*_list(answer.get("warnings")), *_list(answer.get("infos"))]
    )[:_WARNINGS]
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        return QueryResult("scalar", (_sample({}, result, where),), warnings)
    if kind != "vector":
        raise QueryError(
            f"{where}: the query returns a {kind}, not an instant vector or scalar "
            "(wrap a range selector in a function such as rate(...))",
            error_type="result_type",
        )
    items = _list(result)
    if len(items) > max_series:
        raise QueryError(
            f"{where}: the query returned {len(items)} series, more than {max_series}",
            error_type="too_many_series",
        )
    return QueryResult("vector", tuple(_series(item, where) for item in items), warnings)


def _series(item: Any, where: str) -> Series:
    if not isinstance(item, dict):
        raise PrometheusUnavailable(f"{where}: a result entry is not an object")
    if "histogram" in item and "value" not in item:
        raise QueryError(
            f"{where}: the query returns native histogram samples, not floats "
            "(use histogram_quantile(...) or histogram_count(...))",
            error_type="result_type",
        )
    metric = item.get("metric")
    labels = {str(k): str(v) for k, v in metric.items()} if isinstance(metric, dict) else {}
    return _sample(labels, item.get("value"), where)


def _sample(labels: Mapping[str, str], pair: Any, where: str) -> Series:
    """`[unix_seconds, "value"]`: the value is a string so that NaN and ±Inf survive JSON."""
    if not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2:
        raise PrometheusUnavailable(f"{where}: a sample is not [time, value]")
    try:
        at, value = float(pair[0]), float(str(pair[1]))
    except (TypeError, ValueError):
        raise PrometheusUnavailable(f"{where}: a sample value is not a number") from None
    if not math.isfinite(at):
        raise PrometheusUnavailable(f"{where}: a sample time is not a number")
    return Series(labels, value, at)


def _kube_status(answer: Any) -> str:
    """The API server's own Status message (e.g. `no endpoints available for service`)."""
    if isinstance(answer, dict) and answer.get("kind") == "Status":
        text = _text(answer.get("message") or answer.get("reason"))
        return f" ({text})" if text else ""
    return ""


def _text(value: Any) -> str:
    return _CONTROL.sub(" ", str(value or ""))[:_TEXT].strip()


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _left(deadline: float, where: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PrometheusUnavailable(f"{where}: time limit reached")
    return left
