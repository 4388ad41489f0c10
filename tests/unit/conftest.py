"""Shared fixtures: a real haproxy and a real nginx on 127.0.0.1, each in its own temporary folder.

Every process started here is stopped at teardown (its whole process group, by id), every wait is bounded,
and all traffic stays on 127.0.0.1. A missing binary FAILS the test: `make host-deps` installs them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

START_TIMEOUT = 10.0
HAPROXY_APP_SERVERS = [f"app{i}" for i in range(1, 5)]
HAPROXY_API_SERVERS = [f"api{i:02d}" for i in range(1, 21)]


def find_binary(name: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(name, path=search)
    if not path:
        pytest.fail(f"{name} not found in PATH or /usr/sbin: run `make host-deps` to install it", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group this fixture started (its leader is ``proc``), then SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # workers may outlive the leader by a few milliseconds; make sure none of the group is left
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def start_process(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)


def unix_command(path: str, command: str, timeout: float = 2.0) -> str:
    """One command on an haproxy CLI socket; the answer ends at EOF or at the empty line that ends it (the
    master CLI keeps the connection open)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n\n") and (data := sock.recv(65536)):
            answer += data
    return answer.decode()


class TcpSink:
    """A listener on 127.0.0.1 that holds every connection open until its peer closes it (then closes too)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _events in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.sock:
                    with contextlib.suppress(BlockingIOError):
                        conn, _addr = self.sock.accept()
                        conn.setblocking(False)
                        self._selector.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(sock)
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


@dataclass
class HAProxyInstance:
    proc: subprocess.Popen[bytes]
    root: Path
    master_socket: str
    socket_path: str
    state_file: str
    config: Path
    log: Path
    frontend_port: int
    sink: TcpSink
    app_servers: list[str] = field(default_factory=lambda: list(HAPROXY_APP_SERVERS))
    api_servers: list[str] = field(default_factory=lambda: list(HAPROXY_API_SERVERS))

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        wait_until(predicate, timeout, what)

    def command(self, command: str) -> str:
        return unix_command(self.socket_path, command)

    def worker_pid(self) -> int:
        for line in self.command("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise AssertionError("no Pid in show info")

    def ready(self) -> bool:
        """The worker answers on the admin socket and the master (in its event loop, so its SIGUSR2 handler is
        installed) lists that worker on the master CLI."""
        if self.proc.poll() is not None:
            pytest.fail(f"haproxy exited with {self.proc.returncode}: {self.log.read_text()}", pytrace=False)
        try:
            worker = str(self.worker_pid())
            return any(
                line.split()[:2] == [worker, "worker"]
                for line in unix_command(self.master_socket, "show proc").splitlines()
            )
        except (OSError, AssertionError):
            return False

    def reload(self) -> None:
        """Master-worker reload (SIGUSR2 to the master), then wait until the new worker serves the socket."""
        old = self.worker_pid()
        os.kill(self.proc.pid, signal.SIGUSR2)

        def new_worker() -> bool:
            try:
                return self.worker_pid() != old and self.ready()
            except OSError:
                return False

        wait_until(new_worker, START_TIMEOUT, f"a new haproxy worker after SIGUSR2 (log: {self.log.read_text()})")


HAPROXY_CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    stats timeout 10s
    server-state-file {state}

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    load-server-state-from-file global

frontend fe_app
    bind 127.0.0.1:{frontend}
    default_backend app

backend app
    balance roundrobin
{app_servers}

backend api
    balance roundrobin
{api_servers}

backend static
    balance static-rr
    server st1 127.0.0.1:{sink} weight 100
    server st2 127.0.0.1:{sink} weight 100
"""


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[HAProxyInstance]:
    """haproxy 2.6 in master-worker mode: backends ``app`` (app1..app4, weight 100), ``api`` (api01..api20,
    weight 10) and ``static`` (static-rr: st1, st2), all pointing at a TCP sink; frontend ``fe_app`` on a
    free port forwards to ``app``."""
    binary = find_binary("haproxy")
    sink = TcpSink()
    root = tmp_path / "haproxy"
    root.mkdir()
    socket_path = str(root / "admin.sock")
    master_socket = str(root / "master.sock")
    state_file = str(root / "server-state")
    frontend = free_port()
    config = root / "haproxy.cfg"
    config.write_text(
        HAPROXY_CONFIG.format(
            socket=socket_path,
            state=state_file,
            frontend=frontend,
            sink=sink.port,
            app_servers="\n".join(f"    server {s} 127.0.0.1:{sink.port} weight 100" for s in HAPROXY_APP_SERVERS),
            api_servers="\n".join(f"    server {s} 127.0.0.1:{sink.port} weight 10" for s in HAPROXY_API_SERVERS),
        )
    )
    log = root / "haproxy.log"
    proc = start_process([binary, "-W", "-db", "-S", master_socket, "-f", str(config)], log, root)
    instance = HAProxyInstance(proc, root, master_socket, socket_path, state_file, config, log, frontend, sink)
    try:
        wait_until(instance.ready, START_TIMEOUT, f"haproxy's admin socket {socket_path} and master socket")
        yield instance
    finally:
        stop_process_group(proc)
        sink.close()


class HttpBackend:
    """A tiny HTTP server on 127.0.0.1 that answers every GET with its name."""

    def __init__(self, name: str) -> None:
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.name = name
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


NGINX_CONFIG = """\
worker_processes 1;
{user}
error_log {root}/error.log notice;
pid {root}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/client_body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {upstreams};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_next_upstream off;
        }}
    }}
}}
"""


@dataclass
class NginxInstance:
    proc: subprocess.Popen[bytes]
    root: Path
    conf: Path
    upstream_file: Path
    port: int
    backends: dict[str, HttpBackend]
    test_command: list[str]
    reload_command: list[str]
    log: Path
    calls: list[list[str]] = field(default_factory=list)

    def address(self, name: str) -> str:
        return self.backends[name].address

    def master_pid(self) -> int:
        return int((self.root / "nginx.pid").read_text().strip())

    def workers(self) -> set[int]:
        master = self.master_pid()
        children = Path(f"/proc/{master}/task/{master}/children")
        if children.exists():
            return {int(pid) for pid in children.read_text().split()}
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                        found.add(int(entry.name))
        return found

    def wait_reloaded(self, old_workers: set[int]) -> None:
        """Until the master runs only workers started after ``old_workers`` (the new configuration is live)."""

        def fresh() -> bool:
            workers = self.workers()
            return bool(workers) and not workers & old_workers

        wait_until(fresh, START_TIMEOUT, "nginx's new workers after a reload")

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """``subprocess.run`` that records the commands the client runs."""
        self.calls.append(list(argv))
        check = bool(kwargs.pop("check", False))
        return subprocess.run(argv, check=check, **kwargs)  # type: ignore[call-overload, no-any-return]

    def hits(self, count: int) -> Counter[str]:
        """Send ``count`` GETs (one connection each, 5 s timeout each) and count which backend answered."""
        seen: Counter[str] = Counter()
        for _attempt in range(count):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode()
                seen[body if response.status == 200 else f"HTTP {response.status}"] += 1
            finally:
                conn.close()
        return seen


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxInstance]:
    """nginx 1.22 in the foreground with upstream ``app`` = three Python HTTP backends ``a``, ``b``, ``c``
    (weight 1 each) in ``upstreams.conf``, proxied from a free port on 127.0.0.1."""
    binary = find_binary("nginx")
    root = tmp_path / "nginx"
    (root / "tmp").mkdir(parents=True)
    backends = {name: HttpBackend(name) for name in ("a", "b", "c")}
    port = free_port()
    conf = root / "nginx.conf"
    upstream_file = root / "upstreams.conf"
    upstream_file.write_text(
        "# written by the test fixture\n"
        "upstream app {\n"
        "    zone app 64k;\n" + "".join(f"    server {b.address} weight=1;\n" for b in backends.values()) + "}\n"
    )
    conf.write_text(
        NGINX_CONFIG.format(
            user="user root;" if os.geteuid() == 0 else "",
            root=root,
            upstreams=upstream_file,
            port=port,
        )
    )
    log = root / "nginx.out"
    base = [binary, "-p", f"{root}/", "-e", str(root / "error.log"), "-c", str(conf)]
    proc = start_process([*base, "-g", "daemon off;"], log, root)
    instance = NginxInstance(
        proc, root, conf, upstream_file, port, backends, [*base, "-t"], [*base, "-s", "reload"], log
    )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"nginx exited with {proc.returncode}: {log.read_text()}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return bool(instance.workers())
            except (OSError, ValueError):  # not listening yet, or the pid file is not written yet
                return False

        wait_until(ready, START_TIMEOUT, f"nginx on 127.0.0.1:{port}")
        yield instance
    finally:
        stop_process_group(proc)
        for backend in backends.values():
            backend.close()
