"""`herd.addons.prometheus`: locations, Prometheus's answers, and the time and size bounds.

The answers are Prometheus's `/api/v1/query` JSON as `web/api/v1/api.go` writes it. The
bounds are checked against a small HTTP server on loopback that answers slowly or too much;
real PromQL on real scrapes is `e2e/test_prometheus.py`.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from herd.addons.prometheus import (
    PrometheusClient,
    PrometheusService,
    PrometheusUnavailable,
    PrometheusUrl,
    QueryError,
    locate,
    parse_answer,
)
from herd.clusters.objects import rancher_cluster, secret_cluster
from herd.errors import PermanentError
from herd.names import PROMETHEUS_URL_ANNOTATION
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.settings import Settings

WHERE = "Prometheus http://p"


def answer(status: int, body: Any) -> bytes:
    return json.dumps(body).encode() if not isinstance(body, bytes) else body


def vector(*samples: tuple[dict[str, str], str]) -> bytes:
    result = [{"metric": m, "value": [1700000000.5, v]} for m, v in samples]
    return answer(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("monitoring/prometheus-k8s:9090", PrometheusService("monitoring", "prometheus-k8s")),
        ("https:mon/prom:web", PrometheusService("mon", "prom", "web", "https")),
        ("http:a/b:1", PrometheusService("a", "b", "1", "http")),
    ],
)
def test_service_parses(text: str, expected: PrometheusService) -> None:
    assert PrometheusService.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    ["prom:9090", "ns/prom", "ftp:ns/prom:9090", "NS/prom:9090", "ns/../x:9090", "ns/p:a/b"],
)
def test_service_refuses(text: str) -> None:
    with pytest.raises(PermanentError, match="Prometheus Service"):
        PrometheusService.parse(text)


def test_default_service_is_rancher_monitoring() -> None:
    service = PrometheusService.parse(Settings().prometheus_service)
    assert service.proxy_path() == (
        "/api/v1/namespaces/cattle-monitoring-system/services/"
        "http:rancher-monitoring-prometheus:9090/proxy/api/v1/query"
    )
    custom = Settings.from_env({"HERD_PROMETHEUS_SERVICE": "https:mon/p:web"})
    assert PrometheusService.parse(custom.prometheus_service).scheme == "https"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file:///etc/passwd", "http:// or https://"),
        ("http://", "http:// or https://"),
        ("http://admin:s3cret@prom:9090", "must not hold credentials"),
        ("http://prom:9090/?token=s3cret", "query or fragment"),
        ("http://prom:99999", "not a URL"),
    ],
)
def test_url_refuses_without_repeating_it(text: str, message: str) -> None:
    with pytest.raises(PermanentError, match=message) as raised:
        PrometheusUrl.parse(text)
    assert "s3cret" not in str(raised.value)


def test_locate_prefers_the_clusters_url() -> None:
    service = PrometheusService("mon", "prom")
    plain = Cluster("c1", "c1", {}, True, "file", KubeconfigRef())
    assert locate(plain, service) is service
    annotated = rancher_cluster(
        {
            "metadata": {
                "name": "c1",
                "annotations": {PROMETHEUS_URL_ANNOTATION: " http://10.0.0.9:9090/prom/ "},
            },
            "status": {"clusterName": "c-m-1", "ready": True},
        }
    )
    assert locate(annotated, service) == PrometheusUrl("http://10.0.0.9:9090/prom")
    secret = secret_cluster(
        {"metadata": {"name": "c2", "annotations": {PROMETHEUS_URL_ANNOTATION: "https://p"}}}
    )
    assert secret.prometheus_url == "https://p"
    assert PROMETHEUS_URL_ANNOTATION not in secret.labels


def test_vector_and_scalar() -> None:
    result = parse_answer(200, vector(({"code": "500"}, "0.25"), ({"code": "200"}, "NaN")), WHERE)
    assert result.kind == "vector"
    assert [dict(s.labels) for s in result.series] == [{"code": "500"}, {"code": "200"}]
    assert result.values()[0] == 0.25 and math.isnan(result.values()[1])
    assert result.series[0].at == 1700000000.5
    with pytest.raises(QueryError, match="2 series, expected one"):
        result.single()
    scalar = parse_answer(
        200, answer(200, {"status": "success", "data": {"resultType": "scalar",
                                                        "result": [1.0, "+Inf"]}}), WHERE,
    )  # fmt: skip
    assert scalar.kind == "scalar" and scalar.single() == math.inf
    empty = parse_answer(200, vector(), WHERE)
    assert empty.single() is None and empty.values() == []


def test_warnings_are_kept_short() -> None:
    body = {
        "status": "success",
        "warnings": ["w\n" * 500] * 9,
        "data": {"resultType": "vector", "result": []},
    }
    result = parse_answer(200, answer(200, body), WHERE)
    assert len(result.warnings) == 5 and all(len(w) <= 200 for w in result.warnings)
    assert "\n" not in result.warnings[0]


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (400, {"status": "error", "errorType": "bad_data",
               "error": 'invalid parameter "query": 1:5: parse error'}, QueryError,
         "bad_data: invalid parameter"),
        (422, {"status": "error", "errorType": "execution", "error": "many-to-many"},
         QueryError, "execution: many-to-many"),
        (503, {"status": "error", "errorType": "timeout", "error": "query timed out"},
         PrometheusUnavailable, "timeout: query timed out"),
        (503, {"kind": "Status", "message": 'no endpoints available for service "p"'},
         PrometheusUnavailable, 'HTTP 503 \\(no endpoints available for service "p"\\)'),
        (404, b"404 page not found", PrometheusUnavailable, "HTTP 404$"),
        (200, {"status": "success", "data": {"resultType": "matrix", "result": []}},
         QueryError, "returns a matrix"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "histogram": [1, {"count": "3"}]}]}}, QueryError, "native histogram"),
        (200, {"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1, "x"]}]}}, PrometheusUnavailable, "not a number"),
        (200, {"status": "success"}, PrometheusUnavailable, "no data"),
    ],
)  # fmt: skip
def test_errors(status: int, body: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_answer(status, answer(status, body), WHERE)


def test_too_many_series() -> None:
    body = vector(*[({"i": str(i)}, "1") for i in range(11)])
    with pytest.raises(QueryError, match="11 series, more than 10"):
        parse_answer(200, body, WHERE, max_series=10)


# -- the client against a loopback server ----------------------------------------------


class Fake:
    """A loopback HTTP server whose `/api/v1/query` answer a test chooses."""

    def __init__(self) -> None:
        self.respond: Callable[[BaseHTTPRequestHandler], None] = lambda h: None
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.queries.append(self.path)
                fake.respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # a dripping handler must not hold the teardown
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> PrometheusUrl:
        return PrometheusUrl(f"http://127.0.0.1:{self.server.server_address[1]}")


@pytest.fixture
def fake() -> Iterator[Fake]:
    server = Fake()
    yield server
    server.server.shutdown()
    server.server.server_close()


def send(handler: BaseHTTPRequestHandler, body: bytes, length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)


def test_query_sends_promql_time_and_timeout(fake: Fake) -> None:
    fake.respond = lambda h: send(h, vector(({}, "42")))
    client = PrometheusClient(timeout=3.0)
    result = client.query(fake.url, 'sum(rate(x{code=~"5.."}[1m]))', at=1700000000.0)
    assert result.single() == 42.0
    (path,) = fake.queries
    assert path.startswith("/api/v1/query?query=sum%28rate%28x%7Bcode%3D~%225..%22%7D%5B1m%5D")
    assert "&timeout=3s" in path and "&time=1700000000.000" in path


def test_a_declared_large_answer_is_refused_unread(fake: Fake) -> None:
    fake.respond = lambda h: send(h, b"{}", length=10 << 20)
    with pytest.raises(PrometheusUnavailable, match="larger than 1024 bytes"):
        PrometheusClient(max_bytes=1024).query(fake.url, "up")


def test_an_undeclared_large_answer_is_cut(fake: Fake) -> None:
    def chunked(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()  # no length: read to the end of the connection
        handler.close_connection = True
        handler.wfile.write(b" " * 5000)

    fake.respond = chunked
    with pytest.raises(PrometheusUnavailable, match="larger than 1024 bytes"):
        PrometheusClient(max_bytes=1024).query(fake.url, "up")


def test_a_slow_drip_hits_the_deadline(fake: Fake) -> None:
    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)

    fake.respond = drip
    started = time.monotonic()
    with pytest.raises(PrometheusUnavailable, match=r"time limit|cut off"):
        PrometheusClient(timeout=1.0).query(fake.url, "up")
    assert time.monotonic() - started < 2.5


def test_unreachable_and_too_long() -> None:
    client = PrometheusClient(timeout=2.0)
    with pytest.raises(PrometheusUnavailable, match="unreachable"):
        client.query(PrometheusUrl("http://127.0.0.1:9"), "up")
    with pytest.raises(QueryError, match="longer than 4096"):
        client.query(PrometheusUrl("http://127.0.0.1:9"), "x" * 5000)


def test_service_without_kubeconfig_or_with_a_bad_one(tmp_path: Path) -> None:
    service = PrometheusService("mon", "prom")
    client = PrometheusClient()
    with pytest.raises(PrometheusUnavailable, match="no kubeconfig"):
        client.query(service, "up")
    bad = tmp_path / "kubeconfig"
    bad.write_text("token: s3cret\n: [")
    with pytest.raises(PrometheusUnavailable, match="kubeconfig unusable") as raised:
        client.query(service, "up", kubeconfig=bad)
    assert "s3cret" not in str(raised.value)


async def test_query_async_keeps_the_loop_free(fake: Fake) -> None:
    def slow(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(0.5)
        send(handler, vector(({}, "7")))

    fake.respond = slow
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    result = await PrometheusClient(timeout=5.0).query_async(fake.url, "up")
    ticker.cancel()
    assert result.single() == 7.0
    assert ticks >= 5  # the loop ran while the thread waited
