"""A small stack on 127.0.0.1 for the load and fault benchmarks (bench/traffic_load.py, bench/chaos.py).

Reuses what exists instead of copying it:

- bench/traffic.py: the process bookkeeping (``Processes``, every child in its own process group), its HAProxy
  (master-worker, runtime socket, the http mode, health checks, retries and redispatch of
  roles/haproxy/templates/haproxy.cfg.j2), the ``Poller`` of ``show servers state``, the per-request load client
  (``Load``) and ``failures``;
- tests/unit/plugins/modules/conftest.py: the throw-away CA (``make_certs``), Prometheus's TLS + basic-auth web
  config and credentials, ``PrometheusInstance``;
- tests/unit/plugins/action/test_canary_playbook.py: ``Lab``, which writes the inventory and playbook of a
  ``strata.deploy.canary`` task (load balancers as hosts of their own, local connection) and runs or kills
  ``ansible-playbook``.

What is new here: backends that are one process EACH (so one can be killed or replaced), each serving ``/``,
``/health`` and ``/metrics`` (``app_requests_total{version, code}``, the series the canary gate queries), with an
optional share of 500 answers and an added delay (a bad canary); a Prometheus scraping every backend; a bounded
``wrk`` run and the parsing of its summary.

    .venv/bin/python bench/localstack.py --serve NAME --version 2 --error-every 10 --ports-file F   # one backend
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import traffic  # noqa: E402 - after the path insert: bench/traffic.py

PROMETHEUS_START_TIMEOUT = 40.0
WRK_TIMEOUT_MARGIN = 30.0


def load_file(name: str, path: Path) -> ModuleType:
    """Import a file by path once (the test helpers are not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_helpers() -> tuple[ModuleType, ModuleType]:
    """(tests/unit/plugins/modules/conftest.py, tests/unit/plugins/action/test_canary_playbook.py)."""
    modules = load_file("strata_modules_conftest", ROOT / "tests/unit/plugins/modules/conftest.py")
    canary = load_file("strata_canary_playbook", ROOT / "tests/unit/plugins/action/test_canary_playbook.py")
    return modules, canary


# -- one backend process ------------------------------------------------------------------------------------------
def serve(name: str, version: str, *, error_every: int, delay_ms: float, port: int, ports_file: Path) -> None:
    """HTTP/1.1 keep-alive on 127.0.0.1: ``/`` answers ``<name> <arrival>`` (every ``error_every``-th with 500),
    ``/health`` 200, ``/metrics`` the counts of ``/`` by version and code."""
    counts = {"200": 0, "500": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrival = time.time()
                path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
                status, ctype = "200 OK", b"text/plain"
                if path.startswith(b"/health"):
                    body = b"ok"
                elif path.startswith(b"/metrics"):
                    body = "".join(
                        f'app_requests_total{{version="{version}",code="{code}",server="{name}"}} {n}\n'
                        for code, n in counts.items()
                    ).encode()
                    ctype = b"text/plain; version=0.0.4"
                else:
                    total = counts["200"] + counts["500"] + 1
                    failed = error_every > 0 and total % error_every == 0
                    if delay_ms:
                        await asyncio.sleep(delay_ms / 1000)
                    counts["500" if failed else "200"] += 1
                    status = "500 Internal Server Error" if failed else "200 OK"
                    body = f"{name} {arrival:.6f}".encode()
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                    % (status.encode(), ctype, len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256, reuse_address=True)
        tmp = ports_file.with_suffix(".tmp")
        tmp.write_text(str(server.sockets[0].getsockname()[1]))
        tmp.rename(ports_file)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        with contextlib.suppress(TimeoutError):  # bounded: ends on its own after 2 hours
            await asyncio.wait_for(stop.wait(), timeout=7200)
        server.close()

    asyncio.run(main())


class Backends:
    """Named backend processes; ``replace`` stops one and starts another version on the same port."""

    def __init__(self, procs: traffic.Processes) -> None:
        self.procs = procs
        self.ports: dict[str, int] = {}
        self.proc: dict[str, subprocess.Popen[bytes]] = {}
        self.generation = 0

    def start(self, name: str, version: str = "1", error_every: int = 0, delay_ms: float = 0, port: int = 0) -> int:
        self.generation += 1
        ports_file = self.procs.workdir / f"port-{name}-{self.generation}"
        argv = [sys.executable, __file__, "--serve", name, "--version", version, "--error-every", str(error_every)]
        argv += ["--delay-ms", str(delay_ms), "--port", str(port), "--ports-file", str(ports_file)]
        proc = self.procs.start(f"backend-{name}-{self.generation}", argv)

        def ready() -> bool:
            self.procs.check(f"backend-{name}-{self.generation}", proc)
            return ports_file.exists()

        traffic.wait_until(ready, traffic.START_TIMEOUT, f"backend {name}")
        self.ports[name] = int(ports_file.read_text())
        self.proc[name] = proc
        return self.ports[name]

    def kill(self, name: str) -> float:
        """SIGKILL the backend (no drain, no goodbye); returns when it happened."""
        proc = self.proc.pop(name)
        killed = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.procs.forget(proc)
        return killed

    def replace(self, name: str, version: str, error_every: int = 0, delay_ms: float = 0) -> None:
        port = self.ports[name]
        proc = self.proc.pop(name)
        traffic.Processes.stop(proc)
        self.procs.forget(proc)
        deadline = time.monotonic() + 10
        while True:  # the port is free again once the old process is gone (bounded)
            try:
                self.start(name, version, error_every, delay_ms, port)
                return
            except SystemExit:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


# -- Prometheus scraping every backend ---------------------------------------------------------------------------
def start_prometheus(procs: traffic.Processes, targets: list[int]) -> Any:
    """Debian's prometheus on a free port with TLS and basic auth (the unit tests' CA, web config and credentials),
    scraping ``/metrics`` of every backend port every second; returns their ``PrometheusInstance``."""
    modules, _canary = test_helpers()
    binary = shutil.which("prometheus", path="/usr/bin:/usr/local/bin")
    if not binary:
        raise SystemExit("prometheus is missing: run `make host-deps`")
    folder = procs.workdir / "prometheus"
    folder.mkdir()
    certs = modules.make_certs(folder)
    scrape = ", ".join(f'"127.0.0.1:{port}"' for port in targets)
    (folder / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{scrape}]\n"
    )
    (folder / "web.yml").write_text(
        modules.WEB_CONFIG.format(
            cert=certs.cert, key=certs.key, user=modules.PROMETHEUS_USER, hash=modules.PROMETHEUS_HASH
        )
    )
    port = traffic.free_port()
    proc = procs.start(
        "prometheus",
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--web.config.file={folder / 'web.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    instance = modules.PrometheusInstance(
        f"https://127.0.0.1:{port}",
        str(certs.ca),
        modules.PROMETHEUS_USER,
        modules.PROMETHEUS_PASSWORD,
        folder / "prometheus.log",
    )

    def scraped() -> bool:
        procs.check("prometheus", proc)
        try:
            return len(instance.query('up{job="app"} == 1')) == len(targets)
        except (OSError, ValueError, KeyError):
            return False

    traffic.wait_until(scraped, PROMETHEUS_START_TIMEOUT, "prometheus to scrape every backend", interval=0.5)
    return instance


# -- the stack: N backends behind one HAProxy, optionally Prometheus ---------------------------------------------
class Stack:
    """``size`` backends (``s000`` ..) behind one HAProxy backend ``b<size>``; the last one is the canary."""

    def __init__(self, procs: traffic.Processes, size: int = 4, prometheus: bool = False) -> None:
        self.procs = procs
        self.size = size
        self.backend = f"b{size}"
        self.backends = Backends(procs)
        for index in range(size):
            self.backends.start(f"s{index:03d}")
        self.names = sorted(self.backends.ports)
        self.stable, self.canary = self.names[:-1], self.names[-1:]
        self.lb = traffic.HAProxy(procs, "lb1", dict(self.backends.ports), sizes=[size])
        self.port = self.lb.frontends[size]
        self.prometheus = start_prometheus(procs, list(self.backends.ports.values())) if prometheus else None
        self.ansible = traffic.Ansible(procs.workdir)
        self.runs = 0

    def command(self, text: str) -> str:
        return traffic.unix_command(self.lb.socket, text)

    def canary_share(self) -> float:
        weights = self.lb.weights(self.backend)
        total = sum(weights.values())
        return round(100.0 * sum(weights[s] for s in self.canary) / total, 1) if total else 0.0

    def reset_weights(self) -> None:
        for name in self.stable:
            self.command(f"set server {self.backend}/{name} weight 100")
        for name in self.canary:
            self.command(f"set server {self.backend}/{name} weight 0")

    def canary_lab(self) -> Any:
        """A fresh ``Lab`` of the canary unit tests (its own folder, journal and playbook) for this stack."""
        _modules, canary = test_helpers()
        self.runs += 1
        folder = self.procs.workdir / f"canary-{self.runs:02d}"
        folder.mkdir()
        lb = SimpleNamespace(socket_path=self.lb.socket, state_file=self.lb.state_file)
        return canary.Lab(folder, {"lb1": lb}, self.prometheus)

    def canary_args(self, lab: Any, version: str, **overrides: Any) -> dict[str, Any]:
        args = lab.args(
            backend=self.backend,
            stable=self.stable,
            canary=self.canary,
            rollout_id=f"bench-{self.runs}",
            gate=lab.gate(version) if self.prometheus else None,
        )
        if not self.prometheus:
            args.pop("gate")
        args.update(overrides)
        return args


# -- wrk ----------------------------------------------------------------------------------------------------------
WRK_SCRIPT = (
    "-- written by bench/localstack.py: each connection waits this many ms between requests\n"
    "function delay() return {delay_ms} end\n"
)


def wrk_start(
    procs: traffic.Processes,
    name: str,
    port: int,
    max_seconds: int,
    *,
    connections: int = 10,
    rate: float = 400,
    url: str = "",
) -> subprocess.Popen[bytes]:
    """Debian's wrk, bounded: 1 thread, ``connections`` keep-alive connections, each pausing so that the total stays
    under ``rate`` requests/s (a Lua ``delay()``), for at most ``max_seconds`` s; ``wrk_stop`` ends it sooner.
    ``url`` replaces http://127.0.0.1:``port``/ (bench/converge.py aims at its LB container)."""
    binary = shutil.which("wrk")
    if not binary:
        raise SystemExit("wrk is missing: run `make host-deps` (Debian's wrk)")
    script = procs.workdir / f"{name}.lua"
    script.write_text(WRK_SCRIPT.format(delay_ms=max(1, round(1000 * connections / rate))))
    argv = [binary, "-t1", f"-c{connections}", f"-d{max_seconds}s", "--timeout", "5s", "--latency", "-s", str(script)]
    return procs.start(name, [*argv, url or f"http://127.0.0.1:{port}/"])


def wrk_stop(procs: traffic.Processes, name: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGINT (wrk then prints its summary), bounded wait, parse."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=WRK_TIMEOUT_MARGIN)
    except subprocess.TimeoutExpired:
        traffic.Processes.stop(proc)
    procs.forget(proc)
    return parse_wrk((procs.workdir / f"{name}.out").read_text(errors="replace"))


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests, non-2xx/3xx answers, socket errors and latency percentiles of wrk's summary."""
    out: dict[str, Any] = {"requests": None, "non_2xx_3xx": 0, "socket_errors": {}, "latency": {}}
    if found := re.search(r"(\d+) requests in ([\d.]+)(\w+)", text):
        out["requests"] = int(found.group(1))
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        out["non_2xx_3xx"] = int(found.group(1))
    if found := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, found.groups()), strict=True))
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE):
        out["latency"][f"p{pct}_ms"] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    if found := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["requests_per_s"] = float(found.group(1))
    out["failed"] = out["non_2xx_3xx"] + sum(out["socket_errors"].values())
    return out


def write_json(path: Path | None, report: dict[str, Any]) -> None:
    if path:
        path.write_text(json.dumps(report, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description="one backend process of the bench stack")
    parser.add_argument("--serve", required=True)
    parser.add_argument("--version", default="1")
    parser.add_argument("--error-every", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ports-file", type=Path, required=True)
    args = parser.parse_args()
    serve(
        args.serve,
        args.version,
        error_every=args.error_every,
        delay_ms=args.delay_ms,
        port=args.port,
        ports_file=args.ports_file,
    )


if __name__ == "__main__":
    main()
