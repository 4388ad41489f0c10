"""Traffic-shifting benchmark for strata.deploy.haproxy_servers and strata.deploy.nginx_upstream (a measurement,
not a test; not part of `make test`). Everything runs on 127.0.0.1; nothing needs the lab containers.

What it starts (each in its own process group, all stopped at the end, every wait bounded):

- one Python process serving 100 tiny HTTP backends (``s000`` .. ``s099``, asyncio, one port each); every answer
  is ``<name> <arrival time>``, so the client knows which backend served each request and when it arrived;
- two HAProxy processes (Debian's ``haproxy``, master-worker, runtime socket ``level admin``, the http mode,
  retries, redispatch and health checks of roles/haproxy/templates/haproxy.cfg.j2, without TLS), each with the
  backends ``b4``, ``b20`` and ``b100`` (4, 20 and 100 servers, behind one frontend each);
- one nginx (Debian's ``nginx``, an upstream file in the shape of roles/nginx/templates/upstream.conf.j2) in front
  of 4 of the backends;
- ``ansible-playbook`` (local connection, ANSIBLE_COLLECTIONS_PATH=.cache/collections) for every change of weights,
  the way users run the modules; a small callback (written to the work folder) timestamps every task.

What it measures:

1. steps: a canary on half the servers of a backend, 10 -> 25 -> 50 -> 100 %, with 4, 20 and 100 servers on 1 and
   on 2 HAProxy processes, once with strata.deploy.haproxy_servers (one task per step, ``split``) and once with
   community.general.haproxy (one task per step looping over every server of the backend, with the same weights),
   in the same ansible-playbook run on the same HAProxy. Per step: the task's wall time (task start until the
   last LB answered, from the callback; ansible-playbook's start-up is reported apart) and the mixed-weight
   window (first to last server of the step showing its new weight in ``show servers state``, polled every
   ``--poll-ms``), within one LB and across the LBs;
2. canary + abort under load, on HAProxy and on nginx: a bounded HTTP client (``--rate`` requests/s over 20
   keep-alive connections) runs while a playbook steps the canary 10 -> 25 -> 50 % and then sets it to 0 (the
   abort), ``--aborts`` times. Abort latency = last arrival at a canary backend minus the start of the abort task
   (and minus the moment the LB showed weight 0, for HAProxy); failed requests over the whole load;
3. nginx reloads under load: ``--reloads`` nginx_upstream tasks that each change a weight (one ``nginx -t`` and one
   graceful reload each); errors during them, per reload, and the module's reload time.

Output: a markdown table on stdout, ``--json PATH`` (machine, load, runs per figure, samples, medians, p95) and
``--plot PATH.png`` (matplotlib: weight and error rate over time for one aborted canary on HAProxy and nginx).

    .venv/bin/python bench/traffic.py --quick --json /tmp/traffic.json --plot /tmp/traffic.png   # ~3 minutes
    .venv/bin/python bench/traffic.py --json /tmp/traffic.json --plot /tmp/traffic.png           # the full run

The ``--serve-backends`` and ``--load`` modes are the script's own child processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".cache" / "collections"
sys.path.insert(0, str(COLLECTIONS))

try:
    from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import HAPROXY, server_weights
except ImportError:
    raise SystemExit(f"strata.deploy is not importable from {COLLECTIONS}: run `make collection-link`") from None

STEPS = [10, 25, 50, 100]
SIZES = [4, 20, 100]
BACKEND_COUNT = 100
START_TIMEOUT = 15.0
PLAYBOOK_TIMEOUT = 1800.0  # community.general at 100 servers x 4 steps took 7-8 minutes at load 6-13
CONNECTIONS = 20

CALLBACK = '''
"""Timestamps of every task and result, one JSON object per line (written by bench/traffic.py)."""
import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._out = open(os.environ["BENCH_TIMING_FILE"], "a", encoding="utf-8")

    def _write(self, **fields):
        fields["t"] = time.time()
        self._out.write(json.dumps(fields, default=str) + "\\n")
        self._out.flush()

    def v2_playbook_on_start(self, playbook):
        self._write(ev="start")

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._write(ev="task", name=task.get_name())

    def _result(self, ev, result):
        res = result._result
        keep = {k: res.get(k) for k in ("elapsed", "round_trips", "reload_seconds", "msg") if k in res}
        self._write(ev=ev, host=result._host.get_name(), name=result._task.get_name(), res=keep)

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("failed", result)

    def v2_runner_on_unreachable(self, result):
        self._result("failed", result)

    def v2_playbook_on_stats(self, stats):
        self._write(ev="end")
'''


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "runs": len(values),
        "median": statistics.median(values) if values else None,
        "p95": percentile(values, 95),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "samples": [round(v, 6) for v in values],
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


# -- child process 1: the HTTP backends -------------------------------------------------------------------------
def serve_backends(count: int, ports_file: Path) -> None:
    """``count`` HTTP/1.1 servers on 127.0.0.1 (keep-alive), each answering ``<name> <arrival time>``."""

    async def handle(name: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                arrival = time.time()
                first = head.split(b"\r\n", 1)[0]
                close = first.endswith(b"HTTP/1.0") or b"\r\nconnection: close" in head.lower()
                body = name + b" %.6f" % arrival
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (len(body), b"Connection: close\r\n" if close else b"", body)
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        servers, ports = [], {}
        for index in range(count):
            name = f"s{index:03d}"

            async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: bytes = name.encode()):
                await handle(n, reader, writer)

            server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=256)
            servers.append(server)
            ports[name] = server.sockets[0].getsockname()[1]
        tmp = ports_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ports))
        tmp.rename(ports_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        # bounded: the parent stops this process; if it does not, it ends on its own after 2 hours
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=7200)
        for server in servers:
            server.close()

    asyncio.run(main())


# -- child process 2: the bounded load client -------------------------------------------------------------------
def one(conn: http.client.HTTPConnection) -> list[Any]:
    """One GET /: [start, end, outcome, backend name, arrival time at the backend]."""
    start = time.time()
    conn.request("GET", "/")
    response = conn.getresponse()
    parts = response.read().decode(errors="replace").split()
    if response.will_close:
        conn.close()
    if response.status == 200 and len(parts) == 2:
        return [start, time.time(), "ok", parts[0], float(parts[1])]
    return [start, time.time(), f"http {response.status}", None, None]


def run_load(port: int, rate: float, connections: int, max_seconds: float, out: Path) -> None:
    """GET / over ``connections`` keep-alive connections at ``rate`` requests/s in total, until SIGTERM or
    ``max_seconds``. Every request is recorded: start, end, outcome, backend, arrival time at the backend."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + max_seconds
    interval = connections / rate
    records: list[list[Any]] = []
    lock = threading.Lock()

    def worker(offset: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        mine: list[list[Any]] = []
        next_at = time.monotonic() + offset
        while not stop.is_set() and time.monotonic() < deadline:
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_at = max(next_at + interval, time.monotonic() - interval)
            reused = conn.sock is not None
            start = time.time()
            try:
                mine.append(one(conn))
                continue
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A keep-alive connection the server closed while the request was on its way: clients (browsers,
                # urllib3; not wrk) send an idempotent request again, once, on a new connection (RFC 9112 9.3.1).
                stale = reused and isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                )
                if not stale:
                    mine.append([start, time.time(), "error", type(exc).__name__, None])
                    continue
            try:
                record = one(conn)
                record[0] = start
                record[2] = "ok (retried)" if record[2] == "ok" else record[2]
                mine.append(record)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                mine.append([start, time.time(), "error after a retry", type(exc).__name__, None])
        conn.close()
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=worker, args=(i * interval / connections,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max_seconds + 10)
    records.sort(key=lambda r: r[0])
    out.write_text(json.dumps(records))


# -- processes of the benchmark ---------------------------------------------------------------------------------
class Processes:
    """Every process this run started; each is a process-group leader, stopped by its group id."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.out", "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc

    def check(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            text = (self.workdir / f"{name}.out").read_text(errors="replace")[-2000:]
            raise SystemExit(f"{name} exited with {proc.returncode}: {text}")

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the group (its leader is ``proc``), SIGKILL if it lingers, then make sure none of it is left."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        self.procs = [(name, p) for name, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            self.stop(proc)
        self.procs.clear()


def unix_command(path: str, command: str, timeout: float = 2.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n\n") and (data := sock.recv(65536)):
            answer += data
    return answer.decode()


HAPROXY_CONFIG = """\
global
    stats socket {root}/admin.sock mode 600 level admin
    stats timeout 30s
    maxconn 4096
    hard-stop-after 30s
    server-state-file {root}/server-state

defaults
    mode http
    option httplog
    option dontlognull
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout queue 5s
    load-server-state-from-file global
    option idle-close-on-response
{sections}
"""

HAPROXY_SECTION = """
frontend fe{size}
    bind 127.0.0.1:{port}
    default_backend b{size}

backend b{size}
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    retries 2
    retry-on conn-failure empty-response junk-response 503
    option redispatch 1
    default-server check inter 1s fastinter 500ms fall 3 rise 2 observe layer7 error-limit 5 on-error mark-down
{servers}
"""


class HAProxy:
    """haproxy in master-worker mode (-W, master CLI on master.sock) with backends b4, b20 and b100."""

    def __init__(self, procs: Processes, name: str, ports: dict[str, int], sizes: list[int] | None = None) -> None:
        sizes = sizes or SIZES
        self.name = name
        self.root = procs.workdir / name
        self.root.mkdir()
        self.socket = str(self.root / "admin.sock")
        self.master = str(self.root / "master.sock")
        self.state_file = str(self.root / "server-state")
        self.frontends = {size: free_port() for size in sizes}
        sections = "".join(
            HAPROXY_SECTION.format(
                size=size,
                port=self.frontends[size],
                servers="\n".join(f"    server {s} 127.0.0.1:{ports[s]}" for s in sorted(ports)[:size]),
            )
            for size in sizes
        )
        config = self.root / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(root=self.root, sections=sections))
        self.proc = procs.start(name, ["/usr/sbin/haproxy", "-W", "-db", "-S", self.master, "-f", str(config)])

        def ready() -> bool:
            procs.check(name, self.proc)
            try:
                return unix_command(self.socket, "show servers state b4").startswith("1\n")
            except OSError:
                return False

        wait_until(ready, START_TIMEOUT, f"{name}'s admin socket")

        def all_up() -> bool:
            return unix_command(self.socket, "show stat -1 4 -1").count(",UP,") >= sum(sizes)

        wait_until(all_up, START_TIMEOUT, f"{name}: every server UP by its health check")

    def weights(self, backend: str) -> dict[str, int]:
        """Server -> runtime weight (``srv_uweight`` of ``show servers state``)."""
        lines = unix_command(self.socket, f"show servers state {backend}").splitlines()
        header = lines[1].lstrip("# ").split()
        name_i, weight_i = header.index("srv_name"), header.index("srv_uweight")
        found = {}
        for line in lines[2:]:
            fields = line.split()
            if len(fields) > weight_i:
                found[fields[name_i]] = int(fields[weight_i])
        return found


class Poller:
    """Polls ``show servers state <backend>`` on every LB every ``interval`` s; keeps each weight change."""

    def __init__(self, lbs: list[HAProxy], backend: str, interval: float) -> None:
        self.lbs, self.backend, self.interval = lbs, backend, interval
        self.changes: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last: dict[tuple[str, str], int] = {}
        deadline = time.monotonic() + PLAYBOOK_TIMEOUT + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            for lb in self.lbs:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    seen = lb.weights(self.backend)
                    now = time.time()
                    for server, weight in seen.items():
                        key = (lb.name, server)
                        if last.get(key) != weight:
                            last[key] = weight
                            self.changes.setdefault(key, []).append((now, weight))
            self.polls += 1
            self._stop.wait(self.interval)

    def first_seen(self, key: tuple[str, str], weight: int, after: float) -> float | None:
        for when, value in self.changes.get(key, []):
            if when >= after and value == weight:
                return when
        return None


NGINX_CONFIG = """\
worker_processes 2;
{user}
error_log {root}/error.log notice;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/client_body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {root}/upstreams/app.conf;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground with upstream ``app`` = 4 backends (2 stable, 2 canary) in its own include file."""

    def __init__(self, procs: Processes, ports: dict[str, int]) -> None:
        self.root = procs.workdir / "nginx"
        (self.root / "tmp").mkdir(parents=True)
        (self.root / "upstreams").mkdir()
        self.port = free_port()
        self.servers = sorted(ports)[:4]
        self.address = {s: f"127.0.0.1:{ports[s]}" for s in self.servers}
        self.upstream_file = self.root / "upstreams" / "app.conf"
        self.upstream_file.write_text(
            "upstream app {\n    zone app 64k;\n    keepalive 16;\n"
            + "".join(f"    server {self.address[s]} weight=1 max_fails=3 fail_timeout=10s;\n" for s in self.servers)
            + "}\n"
        )
        conf = self.root / "nginx.conf"
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONFIG.format(root=self.root, port=self.port, user=user))
        base = ["/usr/sbin/nginx", "-p", f"{self.root}/", "-e", str(self.root / "error.log"), "-c", str(conf)]
        self.test_command = " ".join([*base, "-t", "-q"])
        self.reload_command = " ".join([*base, "-s", "reload"])
        self.proc = procs.start("nginx", [*base, "-g", "daemon off;"])

        def ready() -> bool:
            procs.check("nginx", self.proc)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_until(ready, START_TIMEOUT, "nginx")


# -- ansible-playbook -------------------------------------------------------------------------------------------
class Ansible:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        plugins = workdir / "callback_plugins"
        plugins.mkdir()
        (plugins / "bench_timing.py").write_text(CALLBACK)
        self.env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
            ANSIBLE_CALLBACK_PLUGINS=str(plugins),
            ANSIBLE_CALLBACKS_ENABLED="bench_timing",
            ANSIBLE_NOCOLOR="1",
        )
        self.env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{self.env['PATH']}"
        self.count = 0

    def run(self, hosts: dict[str, dict[str, Any]], tasks: list[dict[str, Any]], label: str) -> dict[str, Any]:
        """Run ``tasks`` on ``hosts`` (local connection) in one ansible-playbook; returns the callback events and
        the start-up time (process start until the first task)."""
        self.count += 1
        base = self.workdir / f"play{self.count:02d}"
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        inventory = base.with_suffix(".inventory.json")
        inventory.write_text(json.dumps({"lbs": {"hosts": {name: {**v, **local} for name, v in hosts.items()}}}))
        playbook = base.with_suffix(".playbook.json")
        playbook.write_text(json.dumps([{"name": label, "hosts": "lbs", "gather_facts": False, "tasks": tasks}]))
        timing = base.with_suffix(".timing.jsonl")
        started = time.time()
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), str(playbook)],
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
            env=dict(self.env, BENCH_TIMING_FILE=str(timing)),
            cwd=ROOT,
        )
        ended = time.time()
        base.with_suffix(".out").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-2000:])
            raise SystemExit(f"ansible-playbook for {label!r} failed ({done.returncode}); see {base}.out")
        events = [json.loads(line) for line in timing.read_text().splitlines()]
        tasks_seen = [e for e in events if e["ev"] == "task"]
        startup = tasks_seen[0]["t"] - started if tasks_seen else None
        return {"events": events, "startup": startup, "total": ended - started}

    @staticmethod
    def task_times(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Task name -> {start, end (last host's result), results}; task names are unique in a playbook."""
        out: dict[str, dict[str, Any]] = {}
        for event in events:
            if event["ev"] == "task":
                out[event["name"]] = {"start": event["t"], "end": None, "results": []}
            elif event["ev"] in ("ok", "failed") and event["name"] in out:
                out[event["name"]]["end"] = event["t"]
                out[event["name"]]["results"].append(event)
        return out


def strata_split_task(name: str, percent: float, backend: str, stable: list[str], canary: list[str]) -> dict:
    return {
        "name": name,
        "strata.deploy.haproxy_servers": {
            "socket": "{{ lb_socket }}",
            "state_file": "{{ lb_state_file }}",
            "split": {"percent": percent, "backends": {backend: {"stable": stable, "canary": canary}}},
        },
    }


def cg_task(name: str, backend: str, weights: dict[str, int]) -> dict:
    """community.general.haproxy as its users write it: one module run per server (a loop)."""
    return {
        "name": name,
        "community.general.haproxy": {
            "state": "enabled",
            "backend": backend,
            "host": "{{ item.server }}",
            "weight": "{{ item.weight }}",
            "socket": "{{ lb_socket }}",
        },
        "loop": [{"server": s, "weight": str(w)} for s, w in weights.items()],
    }


def nginx_task(name: str, nginx: Nginx, percent: float) -> dict:
    return {
        "name": name,
        "strata.deploy.nginx_upstream": {
            "upstream": "app",
            "path": str(nginx.upstream_file),
            "test_command": nginx.test_command,
            "reload_command": nginx.reload_command,
            "split": {
                "percent": percent,
                "stable": [nginx.address[s] for s in nginx.servers[:2]],
                "canary": [nginx.address[s] for s in nginx.servers[2:]],
            },
        },
    }


def pause_task(name: str, seconds: float) -> dict:
    return {"name": name, "ansible.builtin.pause": {"seconds": seconds}}


# -- 1. steps: strata.deploy.haproxy_servers vs community.general.haproxy ---------------------------------------
def step_windows(
    poller: Poller, lbs: list[HAProxy], moved: list[str], weights: dict[str, int], task: dict[str, Any]
) -> tuple[float | None, float | None, int]:
    """Mixed-weight window of one step: (largest within one LB, across every LB, weights the poller never saw)."""
    seen_by_lb: dict[str, list[float]] = {}
    unseen = 0
    for lb in lbs:
        for server in moved:
            when = poller.first_seen((lb.name, server), weights[server], task["start"])
            if when is None or when > task["end"] + 1:
                unseen += 1
            else:
                seen_by_lb.setdefault(lb.name, []).append(when)
    if not seen_by_lb:
        return None, None, unseen
    every = [when for found in seen_by_lb.values() for when in found]
    return max(max(v) - min(v) for v in seen_by_lb.values()), max(every) - min(every), unseen


def measure_steps(
    ansible: Ansible, lbs: list[HAProxy], size: int, *, runs: int, cg_runs: int, poll: float
) -> dict[str, Any]:
    """``runs`` canaries 10 -> 25 -> 50 -> 100 % with strata.deploy.haproxy_servers, then ``cg_runs`` with
    community.general.haproxy, in one ansible-playbook on ``lbs``; weights polled from every LB."""
    backend = f"b{size}"
    servers = sorted(lbs[0].weights(backend))
    stable, canary = servers[: size // 2], servers[size // 2 :]
    weights = {p: server_weights(p, stable, canary, HAPROXY) for p in [0, *STEPS]}
    hosts = {lb.name: {"lb_socket": lb.socket, "lb_state_file": lb.state_file} for lb in lbs}
    tasks: list[dict] = []
    plan: dict[str, list[tuple[int, str]]] = {"strata": [], "community.general": []}  # tool -> (percent, task)
    for tool, count in (("strata", runs), ("community.general", cg_runs)):
        for run in range(count):
            tasks.append(strata_split_task(f"reset {tool} run {run}", 0, backend, stable, canary))
            for percent in STEPS:
                name = f"{tool} run {run} step {percent}%"
                plan[tool].append((percent, name))
                if tool == "strata":
                    tasks.append(strata_split_task(name, percent, backend, stable, canary))
                else:
                    tasks.append(cg_task(name, backend, weights[percent]))
    tasks.append(strata_split_task("reset at the end", 0, backend, stable, canary))
    label = f"steps: {size} servers x {len(lbs)} LB(s)"
    log(f"{label}: strata {runs} run(s), community.general {cg_runs} run(s) of {len(STEPS)} steps")
    with Poller(lbs, backend, poll) as poller:
        played = ansible.run(hosts, tasks, label)
    times = Ansible.task_times(played["events"])
    out: dict[str, Any] = {
        "servers": size,
        "lbs": len(lbs),
        "startup_s": played["startup"],
        "playbook_s": played["total"],
        "polls": poller.polls,
        "poll_interval_s": poll,
    }
    for tool, steps in plan.items():
        step_s, window_lb, window_all, module_s, unseen = [], [], [], [], 0
        for index, (percent, name) in enumerate(steps):
            previous = weights[STEPS[STEPS.index(percent) - 1]] if index % len(STEPS) else weights[0]
            task = times[name]
            step_s.append(task["end"] - task["start"])
            module_s += [r["res"]["elapsed"] for r in task["results"] if isinstance(r["res"].get("elapsed"), float)]
            moved = [s for s in servers if weights[percent][s] != previous[s]]
            per_lb, across, missed = step_windows(poller, lbs, moved, weights[percent], task)
            unseen += missed
            if per_lb is not None and across is not None:
                window_lb.append(per_lb)
                window_all.append(across)
        out[tool] = {
            "step_s": summary(step_s),
            "window_per_lb_s": summary(window_lb),
            "window_across_lbs_s": summary(window_all),
            "weights_not_seen_by_poller": unseen,
        }
        if tool == "strata":
            out[tool]["runtime_api_s"] = summary(module_s)
    if out["community.general"]["step_s"]["runs"]:
        out["ratio_median_step"] = out["community.general"]["step_s"]["median"] / out["strata"]["step_s"]["median"]
    return out


# -- 2. canary + abort under load, 3. nginx reloads under load --------------------------------------------------
class Load:
    """The load client as a child process (its own process group); ``stop()`` returns its records."""

    def __init__(self, procs: Processes, name: str, port: int, rate: float, max_seconds: float) -> None:
        self.procs, self.name = procs, name
        self.out = procs.workdir / f"{name}.json"
        argv = [sys.executable, __file__, "--load", str(port), "--rate", str(rate)]
        self.proc = procs.start(name, [*argv, "--max-seconds", str(max_seconds), "--out", str(self.out)])

    def stop(self) -> list[list[Any]]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            Processes.stop(self.proc)
        self.procs.forget(self.proc)
        if not self.out.exists():
            raise SystemExit(f"the load client {self.name} wrote no results: {self.procs.workdir / self.name}.out")
        return json.loads(self.out.read_text())


def served(record: list[Any]) -> bool:
    return str(record[2]).startswith("ok")


def failures(records: list[list[Any]]) -> dict[str, Any]:
    """Failed requests by kind; ``retried`` counts the requests that succeeded when sent again once after the LB
    closed their keep-alive connection (what browsers and urllib3 do; they are not failures for a user)."""
    kinds: dict[str, int] = {}
    for record in records:
        if not served(record):
            kinds[record[2]] = kinds.get(record[2], 0) + 1
    retried = sum(1 for record in records if record[2] == "ok (retried)")
    return {"requests": len(records), "failed": sum(kinds.values()), "by_kind": kinds, "retried": retried}


def canary_abort(
    ansible: Ansible,
    procs: Processes,
    kind: str,
    *,
    lb: HAProxy | None = None,
    nginx: Nginx | None = None,
    aborts: int,
    rate: float,
    poll: float,
) -> dict[str, Any]:
    """Canary 10 -> 25 -> 50 %, then 0 (abort), ``aborts`` times, under load; HAProxy (backend b4) or nginx."""
    if lb is not None:
        servers = sorted(lb.weights("b4"))
        stable, canary = servers[:2], servers[2:]
        port = lb.frontends[4]
        hosts = {lb.name: {"lb_socket": lb.socket, "lb_state_file": lb.state_file}}

        def step(name: str, percent: float) -> dict:
            return strata_split_task(name, percent, "b4", stable, canary)
    else:
        assert nginx is not None
        canary = nginx.servers[2:]
        port = nginx.port
        hosts = {"nginx": {}}

        def step(name: str, percent: float) -> dict:
            return nginx_task(name, nginx, percent)

    tasks = [step("reset", 0), pause_task("load without a canary", 1)]
    for index in range(aborts):
        for percent in (10, 25, 50):
            tasks += [step(f"canary {index} step {percent}%", percent), pause_task(f"hold {index} {percent}%", 1)]
        tasks += [step(f"abort {index}", 0), pause_task(f"after abort {index}", 1.5)]
    log(f"canary + abort on {kind} under load ({rate:g} req/s, {CONNECTIONS} connections), {aborts} abort(s)")
    load = Load(procs, f"load-{kind}", port, rate, max_seconds=300)
    poller_cm = Poller([lb], "b4", poll) if lb is not None else contextlib.nullcontext()
    with poller_cm as poller:
        try:
            played = ansible.run(hosts, tasks, f"canary + abort on {kind}")
            time.sleep(0.5)
        finally:
            records = load.stop()
    times = Ansible.task_times(played["events"])
    latency_task, latency_live, reached = [], [], []
    for index in range(aborts):
        start = times[f"abort {index}"]["start"]
        end_window = times[f"after abort {index}"]["end"]
        after = [r for r in records if served(r) and r[3] in canary and start <= r[4] <= end_window]
        reached.append(len(after))
        last = max((r[4] for r in after), default=None)
        latency_task.append((last - start) if last is not None else 0.0)
        if poller is not None:
            zero = [poller.first_seen((lb.name, s), 0, start) for s in canary]
            if all(z is not None for z in zero):
                live = max(z for z in zero if z is not None)
                latency_live.append(max(0.0, last - live) if last is not None else 0.0)
    result: dict[str, Any] = {
        "lb": kind,
        "aborts": aborts,
        "rate_rps": rate,
        "connections": CONNECTIONS,
        "abort_latency_from_task_start_s": summary(latency_task),
        "canary_requests_after_abort_start": reached,
        "load": failures(records),
        "startup_s": played["startup"],
    }
    if poller is not None:
        result["abort_latency_after_weight_live_s"] = summary(latency_live)
    else:
        result["reload_s"] = summary(
            [r["res"]["reload_seconds"] for t in times.values() for r in t["results"] if r["res"].get("reload_seconds")]
        )
    result["_timeline"] = {
        "records": records,
        "times": times,
        "canary": canary,
        "weights": {f"{k[0]}/{k[1]}": v for k, v in poller.changes.items()} if poller else {},
    }
    return result


def nginx_reloads(ansible: Ansible, procs: Processes, nginx: Nginx, reloads: int, rate: float) -> dict[str, Any]:
    """``reloads`` nginx_upstream tasks in a row (10 % / 20 % canary, each one test + one reload) under load."""
    tasks = [nginx_task("reset", nginx, 0), pause_task("load before the reloads", 1)]
    tasks += [nginx_task(f"reload {i}", nginx, 10 if i % 2 == 0 else 20) for i in range(reloads)]
    tasks += [pause_task("load after the reloads", 1), nginx_task("reset at the end", nginx, 0)]
    log(f"{reloads} nginx reloads (nginx_upstream tasks) under load ({rate:g} req/s)")
    load = Load(procs, "load-nginx-reloads", nginx.port, rate, max_seconds=300)
    try:
        played = ansible.run({"nginx": {}}, tasks, "nginx reloads")
        time.sleep(0.5)
    finally:
        records = load.stop()
    times = Ansible.task_times(played["events"])
    first, last = times["reload 0"]["start"], times[f"reload {reloads - 1}"]["end"]
    during = [r for r in records if first <= r[0] <= last + 1]
    before = [r for r in records if r[0] < times["load before the reloads"]["end"]]
    reload_s = [
        r["res"]["reload_seconds"]
        for i in range(reloads)
        for r in times[f"reload {i}"]["results"]
        if r["res"].get("reload_seconds") is not None
    ]
    task_s = [times[f"reload {i}"]["end"] - times[f"reload {i}"]["start"] for i in range(reloads)]
    during_failures = failures(during)
    return {
        "reloads": reloads,
        "rate_rps": rate,
        "reload_s": summary(reload_s),
        "task_s": summary(task_s),
        "during_reloads": during_failures,
        "before_reloads": failures(before),
        "failed_per_reload": during_failures["failed"] / reloads,
        "retried_per_reload": during_failures["retried"] / reloads,
    }


# -- output -----------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    mem = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            mem[key] = value.strip()

    def version(argv: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        return "unknown"

    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "memory": mem.get("MemTotal"),
        "python": platform.python_version(),
        "haproxy": version(["/usr/sbin/haproxy", "-v"]),
        "nginx": version(["/usr/sbin/nginx", "-v"]),
        "ansible": version([str(ROOT / ".venv" / "bin" / "ansible"), "--version"]),
    }


def fmt(value: float | None, unit: str = "s", scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f} {unit}"


def ms(figure: dict[str, Any], key: str) -> str:
    return fmt(figure[key], "ms", 1000, 1)


def kinds(load: dict[str, Any]) -> str:
    return "".join(f", {count} {kind}" for kind, count in load["by_kind"].items())


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Machine: {report['machine']['cores']} cores, {report['machine']['memory']}; load average "
        f"{report['load_before']} before, {report['load_after']} after; mode {report['mode']}.",
        "",
        "| Servers x LBs | strata step (median / p95) | c.g. step (median / p95) | ratio | strata window per LB "
        "/ across LBs (median, max) | c.g. window per LB / across LBs (median, max) | steps (strata / c.g.) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["steps"]:
        s, c = row["strata"], row["community.general"]
        ratio = f"{row['ratio_median_step']:.1f}x" if row.get("ratio_median_step") else "-"
        lines.append(
            f"| {row['servers']} x {row['lbs']} | {fmt(s['step_s']['median'])} / {fmt(s['step_s']['p95'])} "
            f"| {fmt(c['step_s']['median'])} / {fmt(c['step_s']['p95'])} | {ratio} "
            f"| {ms(s['window_per_lb_s'], 'median')}, {ms(s['window_per_lb_s'], 'max')} / "
            f"{ms(s['window_across_lbs_s'], 'median')}, {ms(s['window_across_lbs_s'], 'max')} "
            f"| {ms(c['window_per_lb_s'], 'median')}, {ms(c['window_per_lb_s'], 'max')} / "
            f"{ms(c['window_across_lbs_s'], 'median')}, {ms(c['window_across_lbs_s'], 'max')} "
            f"| {s['step_s']['runs']} / {c['step_s']['runs']} |"
        )
    startups = [row["startup_s"] for row in report["steps"] if row.get("startup_s")]
    api = [v for row in report["steps"] for v in row["strata"].get("runtime_api_s", {}).get("samples", [])]
    if startups:
        lines += [
            "",
            f"ansible-playbook start-up until its first task (not in the step times): median "
            f"{statistics.median(startups):.2f} s over {len(startups)} playbooks. Inside the strata steps, the "
            f"runtime API round trips took median {fmt(statistics.median(api) if api else None, 'ms', 1000, 2)}"
            " per LB.",
        ]
    lines += [
        "",
        "| Canary + abort under load | abort latency from the abort task's start (median / max) | after weight 0 "
        "is live (median / max) | requests | failed | retried on a new connection | aborts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["abort"]:
        live = row.get("abort_latency_after_weight_live_s")
        task = row["abort_latency_from_task_start_s"]
        lines.append(
            f"| {row['lb']} | {fmt(task['median'])} / {fmt(task['max'])} | "
            f"{fmt(live['median']) + ' / ' + fmt(live['max']) if live else 'n/a (no runtime state)'} | "
            f"{row['load']['requests']} | {row['load']['failed']}{kinds(row['load'])} | "
            f"{row['load']['retried']} | {row['aborts']} |"
        )
    if report.get("nginx_reloads"):
        r = report["nginx_reloads"]
        lines += [
            "",
            f"nginx: {r['reloads']} nginx_upstream reloads under {r['rate_rps']:g} req/s: "
            f"{r['during_reloads']['failed']} failed of {r['during_reloads']['requests']} requests "
            f"({r['failed_per_reload']:.2f} per reload{kinds(r['during_reloads'])}), "
            f"{r['during_reloads']['retried']} retried on a new connection ({r['retried_per_reload']:.1f} per reload); "
            f"reload command median {fmt(r['reload_s']['median'])} (p95 {fmt(r['reload_s']['p95'])}), "
            f"task median {fmt(r['task_s']['median'])}.",
        ]
    return "\n".join(lines)


def timeline_bins(records: list[list[Any]], canary: set[str], bin_s: float) -> tuple[list[float], ...]:
    """Per ``bin_s`` bin of request start times: x (s since the first request), % served by the canary, % failed."""
    if not records:
        return [], [], []
    zero = records[0][0]
    bins = int((records[-1][0] - zero) / bin_s) + 1
    total, to_canary, failed = [0] * bins, [0] * bins, [0] * bins
    for record in records:
        index = int((record[0] - zero) / bin_s)
        total[index] += 1
        if not served(record):
            failed[index] += 1
        elif record[3] in canary:
            to_canary[index] += 1
    xs = [i * bin_s for i in range(bins)]
    share = [100 * c / t if t else math.nan for c, t in zip(to_canary, total, strict=True)]
    errors = [100 * f / t if t else 0.0 for f, t in zip(failed, total, strict=True)]
    return xs, share, errors


def weight_line(timeline: dict[str, Any], zero: float) -> tuple[list[float], list[float], str]:
    """The canary's share of the weights over time: HAProxy's from ``show servers state`` (polled), nginx's from the
    end of each nginx_upstream task (the file is written, tested and reloaded by then)."""
    canary: set[str] = set(timeline["canary"])
    xs: list[float] = []
    ys: list[float] = []
    if timeline["weights"]:
        changes = sorted((t, key.split("/", 1)[1], w) for key, seen in timeline["weights"].items() for t, w in seen)
        current: dict[str, int] = {}
        for when, server, weight in changes:
            current[server] = weight
            whole = sum(current.values())
            xs.append(when - zero)
            ys.append(100 * sum(w for s, w in current.items() if s in canary) / whole if whole else 0.0)
        return xs, ys, "canary share of the weights (%, read back from HAProxy)"
    for name, task in sorted(timeline["times"].items(), key=lambda kv: kv[1]["start"]):
        if name.startswith(("canary", "abort", "reset")) and task["end"]:
            xs.append(task["end"] - zero)
            ys.append(0.0 if name.startswith(("abort", "reset")) else float(name.rsplit(" ", 1)[1].rstrip("%")))
    return xs, ys, "canary share of the weights (%, nginx_upstream task done)"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional: only --plot needs it, checked at start-up

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after matplotlib.use

    rows = [row for row in report["abort"] if "_timeline" in row]
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 4 * len(rows)), squeeze=False)
    for axis, row in zip(axes[:, 0], rows, strict=True):
        timeline = row["_timeline"]
        zero = timeline["records"][0][0] if timeline["records"] else 0.0
        xs, share, errors = timeline_bins(timeline["records"], set(timeline["canary"]), 0.1)
        axis.plot(xs, share, lw=0.6, color="tab:blue", label="requests served by the canary (%, per 100 ms)")
        wx, wy, wlabel = weight_line(timeline, zero)
        axis.step(wx, wy, where="post", lw=2, color="tab:orange", label=wlabel)
        for name, task in timeline["times"].items():
            if name.startswith("abort"):
                axis.axvline(task["start"] - zero, color="red", ls=":", lw=1)
        axis.set_ylim(-5, 105)
        axis.set_ylabel("canary %")
        axis.set_title(
            f"{row['lb']}: canary 10 -> 25 -> 50 % then abort to 0 (red: abort task starts), "
            f"{row['rate_rps']:g} req/s, {row['load']['failed']} failed of {row['load']['requests']}"
        )
        right = axis.twinx()
        right.plot(xs, errors, color="black", lw=1, label="failed requests (%, per 100 ms)")
        right.set_ylabel("failed %")
        right.set_ylim(-0.5, max([5.0, *errors]) * 1.1)
        left_h, left_l = axis.get_legend_handles_labels()
        right_h, right_l = right.get_legend_handles_labels()
        axis.legend(left_h + right_h, left_l + right_l, loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds since the load started")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewest runs (about 3 minutes): 1 run of 4 steps per tool and size, community.general only at 4 "
        "servers, 2 aborts per LB kind, 10 nginx reloads",
    )
    parser.add_argument("--runs", type=int, help="runs of 4 steps per size with strata (default 5; quick 1)")
    parser.add_argument(
        "--cg-runs", type=int, help="runs with community.general (default 3, and 1 at 100 servers; quick 1)"
    )
    parser.add_argument(
        "--cg-max-servers", type=int, help="largest backend measured with community.general (default 100; quick 4)"
    )
    parser.add_argument("--aborts", type=int, help="aborts per LB kind under load (default 5; quick 2)")
    parser.add_argument("--reloads", type=int, help="nginx reloads under load (default 20; quick 10)")
    parser.add_argument("--rate", type=float, default=400, help="requests/s of the load client (default 400)")
    parser.add_argument("--poll-ms", type=float, default=5, help="show servers state polling interval (default 5)")
    parser.add_argument("--json", type=Path, help="write every figure and sample here")
    parser.add_argument("--plot", type=Path, help="PNG: weight and error rate over time of one aborted canary")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (configs, logs, playbooks)")
    parser.add_argument("--serve-backends", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=60, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def preflight(args: argparse.Namespace) -> dict[str, Any]:
    """Stop with one line when something is missing; the settings of this run."""
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("--plot needs matplotlib, which is missing: .venv/bin/pip install matplotlib==3.10.8")
    for binary in ("/usr/sbin/haproxy", "/usr/sbin/nginx"):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"{binary} is missing: run `make host-deps`")
    quick = args.quick
    return {
        "runs": args.runs or (1 if quick else 5),
        "cg_runs": args.cg_runs or (1 if quick else 3),
        "cg_runs_at_100": args.cg_runs or 1,
        "cg_max_servers": args.cg_max_servers or (4 if quick else 100),
        "aborts": args.aborts or (2 if quick else 5),
        "reloads": args.reloads or (10 if quick else 20),
        "rate_rps": args.rate,
        "connections": CONNECTIONS,
        "poll_interval_s": args.poll_ms / 1000,
        "steps_percent": STEPS,
    }


def measure_all(procs: Processes, report: dict[str, Any], cfg: dict[str, Any]) -> None:
    ports_file = procs.workdir / "ports.json"
    backends = procs.start(
        "backends", [sys.executable, __file__, "--serve-backends", str(BACKEND_COUNT), "--ports-file", str(ports_file)]
    )

    def ports_ready() -> bool:
        procs.check("backends", backends)
        return ports_file.exists()

    wait_until(ports_ready, START_TIMEOUT, "the backends")
    ports = json.loads(ports_file.read_text())
    lbs = [HAProxy(procs, "lb1", ports), HAProxy(procs, "lb2", ports)]
    nginx = Nginx(procs, ports)
    log(f"{BACKEND_COUNT} backends, 2 HAProxy and 1 nginx up; work folder {procs.workdir}")
    ansible = Ansible(procs.workdir)
    poll, rate = cfg["poll_interval_s"], cfg["rate_rps"]
    for size in SIZES:
        for count in (1, 2):
            cg_runs = cfg["cg_runs"] if size < 100 else cfg["cg_runs_at_100"]
            cg_runs = 0 if size > cfg["cg_max_servers"] else cg_runs
            row = measure_steps(ansible, lbs[:count], size, runs=cfg["runs"], cg_runs=cg_runs, poll=poll)
            row["load_average"] = loadavg()
            report["steps"].append(row)
            log(
                f"  {size} x {count}: strata median {fmt(row['strata']['step_s']['median'])}, "
                f"community.general {fmt(row['community.general']['step_s']['median'])} (load {row['load_average']})"
            )
    for kind, target in (("HAProxy", {"lb": lbs[0]}), ("nginx", {"nginx": nginx})):
        row = canary_abort(ansible, procs, kind, aborts=cfg["aborts"], rate=rate, poll=poll, **target)
        row["load_average"] = loadavg()
        report["abort"].append(row)
    report["nginx_reloads"] = nginx_reloads(ansible, procs, nginx, cfg["reloads"], rate)
    report["nginx_reloads"]["load_average"] = loadavg()


def main() -> None:
    args = parse_args()
    if args.serve_backends:
        serve_backends(args.serve_backends, args.ports_file)
        return
    if args.load:
        run_load(args.load, args.rate, CONNECTIONS, args.max_seconds, args.out)
        return
    cfg = preflight(args)
    began = time.time()
    report: dict[str, Any] = {
        "benchmark": "traffic",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "default",
        "machine": machine(),
        "load_before": loadavg(),
        "settings": cfg,
        "steps": [],
        "abort": [],
    }
    procs = Processes(Path(tempfile.mkdtemp(prefix="strata-bench-traffic-")))
    # SIGTERM (like Ctrl-C) goes through the finally below, which stops every process group this run started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    try:
        measure_all(procs, report, cfg)
    except (SystemExit, KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        report["error"] = str(exc) or type(exc).__name__
        if args.json:  # what was measured until then
            for row in report["abort"]:
                row.pop("_timeline", None)
            args.json.write_text(json.dumps(report, indent=1))
        raise
    finally:
        procs.stop_all()
        if args.keep:
            log(f"work folder kept: {procs.workdir}")
        else:
            shutil.rmtree(procs.workdir, ignore_errors=True)
    report["load_after"] = loadavg()
    report["wall_s"] = time.time() - began
    if args.plot:
        plot(report, args.plot)
        log(f"plot written to {args.plot}")
    for row in report["abort"]:
        timeline = row.pop("_timeline")
        row["timeline"] = {"canary": timeline["canary"], "weights_seen": timeline["weights"]}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        log(f"figures written to {args.json}")
    print(markdown(report))
    print(f"\nwall time {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
