"""The Prometheus client's transport against a scripted HTTP server on 127.0.0.1 (answers chosen per test).

The behaviour against a real Prometheus (TLS, basic auth, parse errors) is tested through the module in
tests/unit/plugins/modules/test_prometheus_gate.py.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._prometheus.client import (
    MAX_GET_URL,
    PrometheusAuthError,
    PrometheusClient,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachableError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError

PASSWORD = "not-a-secret"  # noqa: S105 - a fake credential for the scripted server
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}}


class Scripted:
    """Answers each request with the next ``(status, body, headers)`` of ``script`` (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[tuple[int, object, dict[str, str]]] = []
        self.requests: list[dict[str, object]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                owner.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                index = min(len(owner.requests), len(owner.script)) - 1
                status, answer, headers = owner.script[index]
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    try:
        yield scripted
    finally:
        scripted.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(url: str, sleeps: list[float], **kwargs) -> PrometheusClient:
    return PrometheusClient(url, timeout=2, sleep=sleeps.append, jitter=lambda: 0.5, **kwargs)


def test_instant_query_with_auth_time_and_timeout(server, sleeps):
    server.script = [(200, VECTOR, {})]
    client = client_for(server.url + "/prom/", sleeps, username="u", password=PASSWORD)

    result = client.query('sum(up{job="app"})', at=1700000000.5)

    assert result.single_value() == 0.25
    request = server.requests[0]
    assert request["method"] == "GET"
    path, query = str(request["path"]).split("?", 1)
    assert path == "/prom/api/v1/query"
    assert urllib.parse.parse_qs(query) == {
        "query": ['sum(up{job="app"})'],
        "timeout": ["2s"],
        "time": ["1700000000.500"],
    }
    assert request["headers"]["Authorization"] == "Basic dTpub3QtYS1zZWNyZXQ="  # u:not-a-secret
    assert sleeps == []


def test_long_query_is_posted(server, sleeps):
    server.script = [(200, VECTOR, {})]
    promql = "sum(" + " + ".join(f'x{{a="{i}"}}' for i in range(700)) + ")"
    assert len(promql) > MAX_GET_URL

    client_for(server.url, sleeps).query(promql)

    request = server.requests[0]
    assert request["method"] == "POST" and request["path"] == "/api/v1/query"
    assert urllib.parse.parse_qs(str(request["body"]))["query"] == [promql]


def test_transient_errors_are_retried_with_backoff(server, sleeps):
    server.script = [(503, {"status": "error", "errorType": "timeout", "error": "busy"}, {}), (502, b"bad gw", {}),
                     (200, VECTOR, {})]  # fmt: skip

    result = client_for(server.url, sleeps, retries=3).query("up")

    assert result.single_value() == 0.25
    assert len(server.requests) == 3
    assert sleeps == [0.375, 0.75], "jittered exponential backoff (jitter fixed at 0.5)"


def test_retries_are_bounded(server, sleeps):
    server.script = [(503, {"status": "error", "errorType": "unavailable", "error": "overloaded"}, {})]

    with pytest.raises(PrometheusUnreachableError, match=r"after 3 attempt\(s\).*HTTP 503 overloaded"):
        client_for(server.url, sleeps, retries=2).query("up")
    assert len(server.requests) == 3 and len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 422])
def test_bad_query_is_not_retried_and_quotes_prometheus(server, sleeps, status):
    error = "1:5: parse error: unexpected end of input in parenthesized expression"
    server.script = [(status, {"status": "error", "errorType": "bad_data", "error": error}, {})]

    with pytest.raises(PrometheusQueryError) as raised:
        client_for(server.url, sleeps).query("sum(")

    assert raised.value.error == error and raised.value.status == status and raised.value.query == "sum("
    assert f"(HTTP {status} bad_data): {error}" in str(raised.value)
    assert len(server.requests) == 1 and sleeps == []


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_not_retried(server, sleeps, status):
    server.script = [(status, b"Unauthorized\n", {})]

    with pytest.raises(PrometheusAuthError, match=f"HTTP {status}") as raised:
        client_for(server.url, sleeps, username="u", password=PASSWORD).query("up")

    assert PASSWORD not in str(raised.value)
    assert len(server.requests) == 1


def test_credentials_are_not_sent_to_a_redirect_target(server, sleeps):
    server.script = [(302, b"", {"Location": "/elsewhere/api/v1/query?query=up"}), (401, b"Unauthorized", {})]

    with pytest.raises(PrometheusAuthError, match="after a redirect"):
        client_for(server.url, sleeps, username="u", password=PASSWORD).query("up")

    assert "Authorization" in server.requests[0]["headers"]
    assert "Authorization" not in server.requests[1]["headers"]


def test_wrong_path_and_non_json_are_explained(server, sleeps):
    server.script = [(404, b"404 page not found", {})]
    with pytest.raises(PrometheusResponseError, match="base URL of Prometheus"):
        client_for(server.url, sleeps).query("up")

    server.requests.clear()
    server.script = [(200, b"<html>login</html>", {})]
    with pytest.raises(PrometheusResponseError, match="did not answer JSON"):
        client_for(server.url, sleeps).query("up")


def test_refused_connection_is_retried_then_unreachable(sleeps):
    with socket.socket() as probe:  # a port of 127.0.0.1 nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = client_for(f"http://127.0.0.1:{port}", sleeps, retries=2)

    with pytest.raises(PrometheusUnreachableError, match=r"after 3 attempt\(s\).*refused"):
        client.query("up")
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"url": "ftp://prom"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "http://prom?x=1"}, "url"),
        ({"url": "http://prom", "timeout": 0}, "timeout"),
        ({"url": "http://prom", "retries": -1}, "retries"),
        ({"url": "http://prom", "username": "u"}, "username"),
        ({"url": "https://prom", "ca_path": "/nonexistent/ca.pem"}, "ca_path"),
    ],
)
def test_bad_settings_name_the_option(kwargs, param):
    with pytest.raises(TrafficSpecError) as raised:
        PrometheusClient(**kwargs)
    assert raised.value.param == param
