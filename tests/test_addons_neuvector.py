"""Contract: Herd's NeuVector client against the stand-in of NeuVector's REST API.

The stand-in (`e2e/testbed/neuvector_standin.py`) implements only the calls the client
makes, with NeuVector's JSON shapes; these tests talk to it directly over HTTPS on
loopback. The path through a real API server's service proxy is in `e2e/test_addons.py`.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from e2e.testbed.neuvector_standin import CannedImage, NeuVectorStandIn, Request
from herd.addons.neuvector import NeuVectorClient, NeuVectorError
from herd.status.facts import ImageScan

pytestmark = pytest.mark.contract

PASSWORD = "standin-password"
APP = "registry.example.com/herd/app:0.1.0"


class Direct:
    """A `Transport` straight to the stand-in (the operator uses the service proxy)."""

    def __init__(self, standin: NeuVectorStandIn) -> None:
        self._standin = standin

    def __call__(
        self, method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection(
            self._standin.host,
            self._standin.port,
            context=self._standin.client_context(),
            timeout=5,
        )
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(
                method, path, body=payload, headers={"Content-Type": "application/json", **headers}
            )
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture
def standin() -> Iterator[NeuVectorStandIn]:
    images = [
        CannedImage(APP, critical=1, high=2, medium=3),
        CannedImage("nginx:1.25", medium=1),  # reported unqualified, matched normalized
        CannedImage("docker.io/library/nginx:1.25", high=5),  # same image, worse scan
    ]
    with NeuVectorStandIn(password=PASSWORD, images=images, scanning=2, scheduled=1) as server:
        yield server


def test_scan_report_logs_in_reads_and_logs_out(standin: NeuVectorStandIn) -> None:
    report = NeuVectorClient(Direct(standin), "admin", PASSWORD).scan_report()
    assert report.images == {
        APP: ImageScan(critical=1, high=2, medium=3),
        "docker.io/library/nginx:1.25": ImageScan(high=5),
    }
    assert report.in_progress == 3
    assert standin.requests == [
        Request("POST", "/v1/auth", authorized=False),
        Request("GET", "/v1/scan/status", authorized=True),
        Request("GET", "/v1/scan/image", authorized=True),
        Request("DELETE", "/v1/auth", authorized=True),
    ]
    assert standin.open_sessions == 0


def test_wrong_password_is_an_error_without_the_password(standin: NeuVectorStandIn) -> None:
    with pytest.raises(NeuVectorError) as raised:
        NeuVectorClient(Direct(standin), "admin", "wrong-password").scan_report()
    assert str(raised.value) == "POST /v1/auth: HTTP 401 (NeuVector error code 3)"
    assert "wrong-password" not in str(raised.value)
    assert [r.path for r in standin.requests] == ["/v1/auth"]


def test_the_stand_in_refuses_what_neuvector_refuses(standin: NeuVectorStandIn) -> None:
    send = Direct(standin)
    status, body = send("GET", "/v1/scan/image", None, {"X-Auth-Token": "made-up"})
    assert (status, json.loads(body)["code"]) == (401, 3)
    status, body = send("GET", "/v1/workload", None, {})
    assert (status, json.loads(body)["code"]) == (404, 1)


def test_a_session_ends_even_when_a_read_fails(standin: NeuVectorStandIn) -> None:
    def failing(
        method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        if path == "/v1/scan/image":
            return 500, b'{"code": 9, "error": "Failed to read cluster", "message": "secret"}'
        return Direct(standin)(method, path, body, headers)

    with pytest.raises(NeuVectorError) as raised:
        NeuVectorClient(failing, "admin", PASSWORD).scan_report()
    assert str(raised.value) == "GET /v1/scan/image: HTTP 500 (NeuVector error code 9)"
    assert standin.open_sessions == 0


@pytest.mark.parametrize(
    ("status", "data", "message"),
    [
        (200, b"<html>", "POST /v1/auth: answer is not JSON"),
        (200, b"[]", "POST /v1/auth: answer is not a JSON object"),
        (200, b'{"token": {}}', "login answer has no token"),
        (
            503,
            b'{"kind": "Status", "message": "no endpoints available for service \\"x\\"",'
            b' "reason": "ServiceUnavailable", "code": 503}',
            'POST /v1/auth: HTTP 503 (no endpoints available for service "x")',
        ),
        (502, b"Bad Gateway", "POST /v1/auth: HTTP 502"),
    ],
)
def test_odd_answers_are_clear_errors(status: int, data: bytes, message: str) -> None:
    def answer(
        method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        return status, data

    with pytest.raises(NeuVectorError) as raised:
        NeuVectorClient(answer, "admin", PASSWORD).scan_report()
    assert str(raised.value) == message


def test_unfinished_and_malformed_image_entries_are_ignored() -> None:
    images = {
        "images": [
            {"image": APP, "status": "scanning", "critical": 9},
            {"image": 5},
            "junk",
            {"image": "quay.io/a/b:1", "status": "finished", "high": -3, "medium": "2"},
        ]
    }
    answers = {
        "/v1/auth": {"token": {"token": "t"}},
        "/v1/scan/status": {"status": {"scanning": "x"}},
        "/v1/scan/image": images,
    }

    def send(
        method: str, path: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        return 200, json.dumps(answers.get(path, {})).encode()

    report = NeuVectorClient(send, "admin", PASSWORD).scan_report()
    assert report.images == {"quay.io/a/b:1": ImageScan()}
    assert report.in_progress == 0
