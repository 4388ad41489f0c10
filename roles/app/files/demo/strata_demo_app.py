# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""strata demo app: a small versioned HTTP service to deploy, balance and canary in the lab.

Debian's python3 and python3-prometheus-client only. Endpoints:

    GET /          JSON: app, version, hostname, pid (APP_ERROR_RATE of these answer 500, APP_EXTRA_LATENCY_MS slower)
    GET /health    200 "ok" (503 "unhealthy" when APP_HEALTHY=false)
    GET /version   the version as plain text, e.g. "1.0.0"
    GET /metrics   Prometheus: requests by version/path/code, latency histogram by version/path, an info metric

Settings come from the environment (the role's env file and the release's own release.env):
APP_LISTEN (empty: every IPv4 address), APP_PORT (8080), APP_VERSION, APP_ERROR_RATE (0.0-1.0),
APP_EXTRA_LATENCY_MS (>= 0), APP_HEALTHY (true/false). A bad value is an error at start (exit status 2),
not a silent default.

One log line per request on stdout (journald under systemd). SIGTERM/SIGINT stop accepting, let in-flight
requests finish, then exit 0. Every response closes its connection (HTTP/1.0), so a stop never waits for
idle keep-alive clients.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, Info, generate_latest
except ImportError:  # pragma: no cover - reported at start with the fix
    sys.stderr.write("strata-demo-app: missing python3-prometheus-client: apt-get install python3-prometheus-client\n")
    sys.exit(3)

APP_NAME = "strata-demo-app"
KNOWN_PATHS = ("/", "/health", "/version", "/metrics")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
EXIT_BAD_CONFIG = 2
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

REQUESTS = Counter(
    "strata_demo_http_requests",
    "HTTP requests answered, by version, path and status code.",
    ["version", "path", "code"],
)
LATENCY = Histogram(
    "strata_demo_http_request_duration_seconds",
    "Time to answer an HTTP request, by version and path.",
    ["version", "path"],
)
BUILD = Info("strata_demo_app", "The running release of the demo app.")


class ConfigError(ValueError):
    """A setting from the environment that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Config:
    listen: str
    port: int
    version: str
    error_rate: float
    extra_latency_ms: int
    healthy: bool
    database_configured: bool
    redis_configured: bool


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _number(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


def load_config(env: dict[str, str]) -> Config:
    """Read and check every setting; raise ConfigError naming the first bad one."""
    return Config(
        listen=env.get("APP_LISTEN", "").strip(),  # "" binds every IPv4 address: the LBs reach the app
        port=int(_number(env, "APP_PORT", 8080, 1, 65535)),
        version=env.get("APP_VERSION", "").strip() or "0.0.0-dev",
        error_rate=_number(env, "APP_ERROR_RATE", 0.0, 0.0, 1.0),
        extra_latency_ms=int(_number(env, "APP_EXTRA_LATENCY_MS", 0, 0, 60_000)),
        healthy=_bool(env, "APP_HEALTHY", True),
        database_configured=bool(env.get("DATABASE_URL") or env.get("PGHOST")),
        redis_configured=bool(env.get("REDIS_URL") or env.get("REDIS_SENTINELS")),
    )


class DemoServer(ThreadingHTTPServer):
    """Threaded server whose close waits for in-flight requests (non-daemon threads, block_on_close)."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hostname = socket.gethostname()
        self.random = random.SystemRandom()
        family = socket.AF_INET6 if ":" in config.listen else socket.AF_INET
        self.address_family = family
        super().__init__((config.listen, config.port), DemoHandler)


class DemoHandler(BaseHTTPRequestHandler):
    server: DemoServer
    server_version = APP_NAME
    sys_version = ""
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        started = time.monotonic()
        path = self.path.split("?", 1)[0]
        label = path if path in KNOWN_PATHS else "other"
        code = 500
        try:
            code = self._answer(path)
        finally:
            elapsed = time.monotonic() - started
            version = self.server.config.version
            REQUESTS.labels(version=version, path=label, code=str(code)).inc()
            LATENCY.labels(version=version, path=label).observe(elapsed)
            sys.stdout.write(
                f'{self.client_address[0]} "GET {path}" {code} {elapsed * 1000:.1f}ms version={version}\n'
            )
            sys.stdout.flush()

    def _answer(self, path: str) -> int:
        route = {
            "/": self._root,
            "/health": self._health,
            "/version": self._version,
            "/metrics": self._metrics,
        }.get(path)
        if route is None:
            return self._send(404, b"not found\n", TEXT)
        return route()

    def _health(self) -> int:
        if self.server.config.healthy:
            return self._send(200, b"ok\n", TEXT)
        return self._send(503, b"unhealthy\n", TEXT)

    def _version(self) -> int:
        return self._send(200, f"{self.server.config.version}\n".encode(), TEXT)

    def _metrics(self) -> int:
        return self._send(200, generate_latest(), CONTENT_TYPE_LATEST)

    def _root(self) -> int:
        config = self.server.config
        if config.extra_latency_ms:
            time.sleep(config.extra_latency_ms / 1000)
        if config.error_rate and self.server.random.random() < config.error_rate:
            body = {"app": APP_NAME, "version": config.version, "error": "injected by APP_ERROR_RATE"}
            return self._send(500, json.dumps(body).encode() + b"\n", JSON)
        body = {
            "app": APP_NAME,
            "version": config.version,
            "hostname": self.server.hostname,
            "pid": os.getpid(),
            "database_configured": config.database_configured,
            "redis_configured": config.redis_configured,
        }
        return self._send(200, json.dumps(body).encode() + b"\n", JSON)

    def _send(self, code: int, body: bytes, content_type: str) -> int:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", self.server.config.version)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return code

    def log_message(self, format: str, *args: object) -> None:
        """Access lines are written by do_GET (with the latency); only errors go to stderr."""

    def log_error(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.client_address[0]} error: {format % args}\n")


def serve(config: Config) -> int:
    server = DemoServer(config)
    BUILD.info({"version": config.version, "hostname": server.hostname})
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        sys.stdout.write(f"{APP_NAME}: {signal.Signals(signum).name}: stopping, finishing in-flight requests\n")
        sys.stdout.flush()
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve")
    loop.start()
    sys.stdout.write(
        f"{APP_NAME} {config.version} listening on {config.listen or '*'}:{config.port} "
        f"(error_rate={config.error_rate:g}, extra_latency_ms={config.extra_latency_ms}, healthy={config.healthy})\n"
    )
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    server.shutdown()  # stop accepting; returns when serve_forever has left its loop
    loop.join()
    server.server_close()  # joins the request threads still running
    sys.stdout.write(f"{APP_NAME} {config.version} stopped\n")
    sys.stdout.flush()
    return 0


def main() -> int:
    try:
        config = load_config(dict(os.environ))
    except ConfigError as exc:
        sys.stderr.write(f"{APP_NAME}: bad setting: {exc}\n")
        return EXIT_BAD_CONFIG
    try:
        return serve(config)
    except OSError as exc:
        sys.stderr.write(f"{APP_NAME}: cannot listen on {config.listen}:{config.port}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
