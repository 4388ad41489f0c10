"""The demo app (roles/app/files/demo) run as the role runs it: Debian's /usr/bin/python3, settings from the
environment, on 127.0.0.1. Checks its endpoints, its metrics, the behaviour knobs and the graceful stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "roles" / "app" / "files" / "demo" / "strata_demo_app.py"
RELEASES = APP.parent / "releases"
PYTHON = "/usr/bin/python3"
START_TIMEOUT = 10.0


def _require_debian_python() -> None:
    if not Path(PYTHON).exists():
        pytest.fail(f"{PYTHON} is missing: the demo app runs on Debian's python3 (apt-get install python3)")
    probe = subprocess.run([PYTHON, "-c", "import prometheus_client"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.fail(
            f"{PYTHON} cannot import prometheus_client, which the demo app needs: "
            "apt-get install python3-prometheus-client (lab/host-deps.sh should list it)"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class App:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str, dict[str, str]]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)


@contextmanager
def running(**settings: str) -> Iterator[App]:
    _require_debian_python()
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "APP_LISTEN": "127.0.0.1", "APP_PORT": str(port), "APP_VERSION": "9.9.9-test"}
    env.update(settings)
    proc = subprocess.Popen([PYTHON, str(APP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    app = App(proc, port)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"demo app exited with {proc.returncode} at start: {proc.stderr.read()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"demo app did not listen on 127.0.0.1:{port} within {START_TIMEOUT}s")
                time.sleep(0.05)
        yield app
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        proc.stdout.close()
        proc.stderr.close()


def test_endpoints_answer_with_the_version() -> None:
    with running() as app:
        assert app.get("/health")[:2] == (200, "ok\n")
        assert app.get("/version")[:2] == (200, "9.9.9-test\n")
        status, body, headers = app.get("/")
        assert status == 200
        page = json.loads(body)
        assert page["version"] == "9.9.9-test"
        assert page["hostname"] == socket.gethostname()
        assert page["database_configured"] is False
        assert headers["X-App-Version"] == "9.9.9-test"
        assert app.get("/nope")[0] == 404


def test_metrics_count_requests_by_version_path_and_code() -> None:
    with running() as app:
        for _request in range(3):
            app.get("/")
        app.get("/nope")
        status, metrics, headers = app.get("/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'strata_demo_http_requests_total{code="200",path="/",version="9.9.9-test"} 3.0' in metrics
        assert 'strata_demo_http_requests_total{code="404",path="other",version="9.9.9-test"} 1.0' in metrics
        assert 'strata_demo_http_request_duration_seconds_count{path="/",version="9.9.9-test"} 3.0' in metrics
        assert 'strata_demo_http_request_duration_seconds_bucket{le="0.1",path="/",version="9.9.9-test"}' in metrics
        assert "strata_demo_app_info{" in metrics
        assert 'version="9.9.9-test"' in metrics.split("strata_demo_app_info{", 1)[1].split("}", 1)[0]


def test_error_rate_one_answers_500_on_root_only() -> None:
    with running(APP_ERROR_RATE="1.0") as app:
        codes = {app.get("/")[0] for _request in range(5)}
        assert codes == {500}
        assert app.get("/health")[0] == 200
        metrics = app.get("/metrics")[1]
        assert 'strata_demo_http_requests_total{code="500",path="/",version="9.9.9-test"} 5.0' in metrics


def test_unhealthy_release_answers_503_on_health() -> None:
    with running(APP_HEALTHY="false") as app:
        assert app.get("/health")[:2] == (503, "unhealthy\n")
        assert app.get("/")[0] == 200


def test_extra_latency_slows_root() -> None:
    with running(APP_EXTRA_LATENCY_MS="300") as app:
        started = time.monotonic()
        assert app.get("/")[0] == 200
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        app.get("/health")
        assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(
    ("name", "value"),
    [("APP_ERROR_RATE", "1.5"), ("APP_ERROR_RATE", "lots"), ("APP_HEALTHY", "maybe"), ("APP_PORT", "70000")],
)
def test_bad_setting_stops_the_start_naming_the_variable(name: str, value: str) -> None:
    _require_debian_python()
    env = {"PATH": "/usr/bin:/bin", "APP_LISTEN": "127.0.0.1", "APP_PORT": str(_free_port()), name: value}
    proc = subprocess.run([PYTHON, str(APP)], env=env, capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 2
    assert name in proc.stderr


def test_sigterm_finishes_the_request_in_flight_then_exits_zero() -> None:
    with running(APP_EXTRA_LATENCY_MS="1500") as app:
        result: dict[str, object] = {}

        def slow_request() -> None:
            result["answer"] = app.get("/", timeout=10)

        client = threading.Thread(target=slow_request)
        client.start()
        time.sleep(0.4)  # the request is now sleeping inside the handler
        os.kill(app.proc.pid, signal.SIGTERM)
        assert app.proc.wait(timeout=10) == 0
        client.join(timeout=10)
        assert result["answer"][0] == 200
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", app.port), timeout=1).close()
        out = app.proc.stdout.read()
        assert "SIGTERM: stopping" in out
        assert '"GET /" 200' in out
        assert out.rstrip().endswith("9.9.9-test stopped")


def test_one_log_line_per_request() -> None:
    with running() as app:
        for path in ("/", "/health", "/version"):
            app.get(path)
        app.proc.terminate()
        app.proc.wait(timeout=10)
        lines = [line for line in app.proc.stdout.read().splitlines() if '"GET ' in line]
        assert [line.split('"')[1] for line in lines] == ["GET /", "GET /health", "GET /version"]
        assert all(line.endswith("version=9.9.9-test") for line in lines)


def test_every_demo_release_sets_the_behaviour_knobs() -> None:
    releases = sorted(p.name for p in RELEASES.iterdir() if p.is_dir())
    assert {"1.0.0", "1.1.0", "2.0.0-bad", "2.1.0-unhealthy"} <= set(releases)
    for name in releases:
        settings = dict(
            line.split("=", 1)
            for line in (RELEASES / name / "release.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        assert {"APP_ERROR_RATE", "APP_EXTRA_LATENCY_MS", "APP_HEALTHY"} <= set(settings), name
