"""Fixtures of the module tests: run a module's ``main()`` in-process, and a real Prometheus on 127.0.0.1.

The haproxy and nginx fixtures come from tests/unit/conftest.py (pytest shares them with this folder); its helper
functions are loaded from that file by path, because pytest imports every conftest under the one name ``conftest``.

``prometheus``: Debian's /usr/bin/prometheus with TLS (a throw-away CA made here) and basic auth, scraping a tiny
exporter every second. Every process is stopped at teardown (by its process group id), every wait is bounded and
all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime
import importlib.util
import ipaddress
import json
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import _internal as module_internal
from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _load_root_conftest() -> Any:
    name = "strata_unit_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[2] / "conftest.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


root = _load_root_conftest()
free_port = root.free_port
wait_until = root.wait_until
find_binary = root.find_binary
start_process = root.start_process
stop_process_group = root.stop_process_group


# -- running a module in-process ---------------------------------------------------------------------


@dataclass
class ModuleRun:
    rc: int
    result: dict[str, Any]

    @property
    def failed(self) -> bool:
        return self.rc != 0 or bool(self.result.get("failed"))


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleRun]:
    """``run_module(main, args, check=False, diff=False)``: call ``main()`` with ``args`` and return its result.

    The module runs as it would on a target: any controller-side import in this pytest process (the action
    plugin tests import ansible.plugins) sets ``is_controller``, which sends ``module.warn()`` to the controller's
    display instead of the result, so it is reset here; and the warnings an earlier run recorded are dropped,
    so a result holds only its own run's warnings."""
    monkeypatch.setattr(module_internal, "is_controller", False)

    def run(main: Callable[[], None], args: dict[str, Any], *, check: bool = False, diff: bool = False) -> ModuleRun:
        capsys.readouterr()  # drop whatever an earlier step printed
        module_warnings._global_warnings.clear()
        module_warnings._global_deprecations.clear()
        full = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(full), pytest.raises(SystemExit) as exited:
            main()
        out = capsys.readouterr().out
        rc = exited.value.code or 0
        return ModuleRun(rc=int(rc), result=json.loads(out))

    return run


# -- a throw-away CA and server certificate ----------------------------------------------------------


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(folder: Path) -> Certs:
    """A CA and a server certificate for 127.0.0.1/localhost, valid for one day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strata unit test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = Certs(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    certs.key.chmod(0o600)
    return certs


# -- a tiny exporter and a real Prometheus -----------------------------------------------------------

# Version 1 is the baseline (0.5% errors, p99 ~0.24 s), 2 a bad canary (3% errors, p99 ~0.9 s), 3 a good canary
# (0.8% errors: under 1% and under baseline + 0.5%; p99 ~0.24 s), 4 a canary with 5 requests and no 5xx series.
METRICS = """\
# HELP app_requests_total Requests served, by version and status code.
# TYPE app_requests_total counter
app_requests_total{version="1",code="200"} 1990
app_requests_total{version="1",code="500"} 10
app_requests_total{version="2",code="200"} 970
app_requests_total{version="2",code="500"} 30
app_requests_total{version="3",code="200"} 992
app_requests_total{version="3",code="500"} 8
app_requests_total{version="4",code="200"} 5
# HELP app_request_duration_seconds Request latency.
# TYPE app_request_duration_seconds histogram
app_request_duration_seconds_bucket{version="1",le="0.1"} 1800
app_request_duration_seconds_bucket{version="1",le="0.25"} 1990
app_request_duration_seconds_bucket{version="1",le="0.5"} 2000
app_request_duration_seconds_bucket{version="1",le="1"} 2000
app_request_duration_seconds_bucket{version="1",le="+Inf"} 2000
app_request_duration_seconds_sum{version="1"} 150
app_request_duration_seconds_count{version="1"} 2000
app_request_duration_seconds_bucket{version="2",le="0.1"} 500
app_request_duration_seconds_bucket{version="2",le="0.25"} 800
app_request_duration_seconds_bucket{version="2",le="0.5"} 950
app_request_duration_seconds_bucket{version="2",le="1"} 1000
app_request_duration_seconds_bucket{version="2",le="+Inf"} 1000
app_request_duration_seconds_sum{version="2"} 200
app_request_duration_seconds_count{version="2"} 1000
app_request_duration_seconds_bucket{version="3",le="0.1"} 900
app_request_duration_seconds_bucket{version="3",le="0.25"} 995
app_request_duration_seconds_bucket{version="3",le="0.5"} 1000
app_request_duration_seconds_bucket{version="3",le="1"} 1000
app_request_duration_seconds_bucket{version="3",le="+Inf"} 1000
app_request_duration_seconds_sum{version="3"} 80
app_request_duration_seconds_count{version="3"} 1000
"""

# bcrypt (cost 4) of PROMETHEUS_PASSWORD, for Prometheus's basic_auth_users (made with Python's crypt module).
PROMETHEUS_USER = "gate"
PROMETHEUS_PASSWORD = "gate-test-password"  # noqa: S105 - a throw-away password of a test server on 127.0.0.1
PROMETHEUS_HASH = "$2b$04$/mL1czNm1vvbSZmVvuJrF.5byfWd6GuBCDz8yUbIZCFIUlXnkQTza"
PROMETHEUS_START_TIMEOUT = 30.0

PROMETHEUS_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["127.0.0.1:{exporter}"]
"""

WEB_CONFIG = """\
tls_server_config:
  cert_file: {cert}
  key_file: {key}
basic_auth_users:
  {user}: "{hash}"
"""


class Exporter:
    """``/metrics`` on 127.0.0.1 with the fixed ``METRICS``."""

    def __init__(self) -> None:
        body = METRICS.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


@dataclass
class PrometheusInstance:
    url: str
    ca: str
    username: str
    password: str
    log: Path

    def connection(self) -> dict[str, Any]:
        """The module options that reach this server."""
        return {"url": self.url, "username": self.username, "password": self.password, "ca_path": self.ca}

    def query(self, promql: str) -> list[Any]:
        """The raw ``data.result`` of an instant query (for the fixture's readiness check)."""
        context = ssl.create_default_context(cafile=self.ca)
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        request = urllib.request.Request(url)  # noqa: S310 - the fixture's own https URL
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=2, context=context) as response:  # noqa: S310 - same URL
            return json.loads(response.read())["data"]["result"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusInstance]:
    """Prometheus 2.x on a free port of 127.0.0.1 with TLS and basic auth, once it has scraped the exporter."""
    binary = find_binary("prometheus")
    root_dir = tmp_path_factory.mktemp("prometheus")
    certs = make_certs(root_dir)
    exporter = Exporter()
    (root_dir / "prometheus.yml").write_text(PROMETHEUS_CONFIG.format(exporter=exporter.port))
    (root_dir / "web.yml").write_text(
        WEB_CONFIG.format(cert=certs.cert, key=certs.key, user=PROMETHEUS_USER, hash=PROMETHEUS_HASH)
    )
    port = free_port()
    log = root_dir / "prometheus.log"
    argv = [
        binary,
        f"--config.file={root_dir / 'prometheus.yml'}",
        f"--web.config.file={root_dir / 'web.yml'}",
        f"--storage.tsdb.path={root_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    proc = start_process(argv, log, root_dir)
    instance = PrometheusInstance(f"https://127.0.0.1:{port}", str(certs.ca), PROMETHEUS_USER, PROMETHEUS_PASSWORD, log)
    try:

        def scraped() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}: {log.read_text()}", pytrace=False)
            try:
                return len(instance.query('app_requests_total{job="app"}')) == 7
            except (OSError, ValueError, KeyError):
                return False

        started = time.monotonic()
        wait_until(scraped, PROMETHEUS_START_TIMEOUT, f"prometheus on 127.0.0.1:{port} to scrape the exporter")
        instance.started_in = time.monotonic() - started  # type: ignore[attr-defined]
        yield instance
    finally:
        stop_process_group(proc)
        exporter.close()
