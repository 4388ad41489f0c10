"""The HAProxy client's parsing and transport logic, without a running haproxy."""

from __future__ import annotations

import errno
import socket
from typing import ClassVar

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._haproxy.client import (
    HAProxyClient,
    HAProxyCommandError,
    HAProxySocketError,
    ServerRecord,
    commands_for,
    parse_servers_state,
    parse_stat,
    server_ref,
    split_answers,
    split_batches,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import Change, ServerState

# Captured from haproxy 2.6.12 (Debian bookworm).
SERVERS_STATE = (
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port\n"
    "2 app 1 a1 127.0.0.1 2 0 10 100 1 1 0 2 0 0 0 0 - 9 - 0 0 - - 0\n"
    "2 app 2 a2 127.0.0.1 2 8 100 100 0 1 0 2 0 0 0 0 - 9 - 0 0 - - 0\n"
    "2 app 3 a3 127.0.0.1 0 1 0 100 0 1 0 0 0 0 0 0 - 9 - 0 0 - - 0\n"
    "2 app 4 a4 127.0.0.1 0 9 7 100 0 1 0 0 0 0 0 0 - 0 - 0 0 - - 0\n"
)
STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,\n"
    "fe,FRONTEND,,,3,3,,,0,0,0,0,0,,,,,OPEN,\n"
    "app,a1,0,0,2,2,,0,0,0,,0,,0,0,0,0,no check,\n"
    "app,a2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DRAIN,\n"
    "app,BACKEND,0,0,2,2,,0,0,0,,0,,0,0,0,0,UP,\n"
)


def test_parse_servers_state():
    records = parse_servers_state(SERVERS_STATE)
    assert records[0] == ServerRecord("app", "a1", "127.0.0.1", 9, "running", 0, 10, 100)
    assert [(r.server, r.admin_state, r.weight) for r in records] == [
        ("a1", "ready", 10),
        ("a2", "drain", 100),
        ("a3", "maint", 0),
        ("a4", "maint", 7),  # maint wins over drain
    ]
    assert records[2].op_state == "stopped"
    assert records[3].port is None
    assert records[1].as_state() == ServerState(100, "drain")


@pytest.mark.parametrize(
    "text",
    [
        "Can't find backend.\n",
        "1\nno header\n",
        "1\n# be_id be_name\n1 app extra\n",
        "1\n# be_id be_name srv_name\n1 app a1\n",
        "1\n# be_id be_name srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight\n"
        "1 app a1 ::1 2 0 heavy 1\n",
    ],
)
def test_parse_servers_state_errors(text):
    with pytest.raises(HAProxyCommandError):
        parse_servers_state(text)


def test_parse_servers_state_empty():
    assert parse_servers_state("") == []


def test_parse_stat_skips_summary_rows():
    stats = parse_stat(STAT)
    assert [(s.backend, s.server, s.scur, s.status) for s in stats] == [
        ("app", "a1", 2, "no check"),
        ("app", "a2", 0, "DRAIN"),
    ]
    with pytest.raises(HAProxyCommandError):
        parse_stat("No such proxy.\n")


def test_split_answers():
    text = "\nNo such server.\n\n\n1\n# header\nrow\n\n"
    assert split_answers(text, 4, "x") == ["", "No such server.", "", "1\n# header\nrow"]
    with pytest.raises(HAProxyCommandError, match="expected 2 answer"):
        split_answers("\n", 2, "a; b")
    with pytest.raises(HAProxyCommandError):
        split_answers("\npartial", 1, "a")


def test_commands_for_orders_weight_and_state():
    changes = [
        Change("app", "a1", ServerState(100, "maint"), ServerState(50, "ready")),
        Change("app", "a2", ServerState(100, "ready"), ServerState(0, "drain")),
        Change("api", "p1", ServerState(10), ServerState(20)),
        Change("api", "p2", ServerState(10), ServerState(10, "maint")),
    ]
    assert commands_for(changes) == [
        "set server app/a1 weight 50",
        "set server app/a1 state ready",
        "set server app/a2 state drain",
        "set server app/a2 weight 0",
        "set server api/p1 weight 20",
        "set server api/p2 state maint",
    ]


@pytest.mark.parametrize("name", ["a b", "a;b", "a/b", "", "x\n"])
def test_commands_for_rejects_unsafe_names(name):
    with pytest.raises(TrafficSpecError):
        commands_for([Change(name, "s", ServerState(1), ServerState(2))])


def test_split_batches():
    commands = [f"set server app/s{i:03d} weight 10" for i in range(500)]
    batches = split_batches(commands, max_line=8000)
    assert sum(len(b) for b in batches) == 500
    assert all(len("; ".join(b)) <= 8000 for b in batches)
    assert len(batches) == 2  # 500 commands of 31 bytes
    assert split_batches(commands[:40]) == [commands[:40]]
    assert split_batches([]) == []


def test_server_ref():
    assert server_ref("app/a1") == ("app", "a1")
    assert server_ref(("app", "a1")) == ("app", "a1")
    with pytest.raises(TrafficSpecError, match="backend/server"):
        server_ref("app")


def test_client_argument_checks():
    with pytest.raises(TrafficSpecError, match="timeout"):
        HAProxyClient("/x", timeout=0)
    with pytest.raises(TrafficSpecError, match="retries"):
        HAProxyClient("/x", retries=-1)
    with pytest.raises(TrafficSpecError, match="one command"):
        HAProxyClient("/x").command("show info; show stat")


class FakeSocket:
    """Stands in for socket.socket: connect() raises the queued errors, then succeeds."""

    errors: ClassVar[list[OSError]] = []
    attempts = 0

    def __init__(self, *args, **kwargs):
        pass

    def settimeout(self, value):
        self.timeout = value

    def connect(self, path):
        FakeSocket.attempts += 1
        if FakeSocket.errors:
            raise FakeSocket.errors.pop(0)

    def close(self):
        pass


@pytest.fixture
def fake_socket(monkeypatch):
    FakeSocket.errors = []
    FakeSocket.attempts = 0
    monkeypatch.setattr(socket, "socket", FakeSocket)
    return FakeSocket


def refused():
    return ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")


def test_connect_retries_transient_errors_with_bounded_jittered_backoff(fake_socket):
    fake_socket.errors = [refused(), BlockingIOError(errno.EAGAIN, "again"), refused()]
    sleeps = []
    client = HAProxyClient("/run/haproxy/admin.sock", retries=3, backoff=0.1, max_backoff=0.3, sleep=sleeps.append,
                           jitter=lambda: 1.0)  # fmt: skip
    client._connect("testing")
    assert fake_socket.attempts == 4
    assert sleeps == [0.1, 0.2, 0.3]


def test_connect_gives_up_after_the_retries(fake_socket):
    fake_socket.errors = [refused() for _attempt in range(10)]
    sleeps = []
    client = HAProxyClient("/run/haproxy/admin.sock", retries=2, sleep=sleeps.append, jitter=lambda: 0.0)
    with pytest.raises(HAProxySocketError, match=r"refused the connection 3 time\(s\)") as exc:
        client._connect("testing")
    assert exc.value.path == "/run/haproxy/admin.sock"
    assert fake_socket.attempts == 3
    assert len(sleeps) == 2 and all(0 < s <= 1.0 for s in sleeps)


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file"), "does not exist"),
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        (TimeoutError("timed out"), "no answer"),
        (OSError(errno.ENOTSOCK, "Socket operation on non-socket"), "cannot use"),
    ],
)
def test_non_transient_errors_are_not_retried(fake_socket, error, text):
    fake_socket.errors = [error]
    sleeps = []
    with pytest.raises(HAProxySocketError, match=text) as exc:
        HAProxyClient("/run/haproxy/admin.sock", sleep=sleeps.append)._connect("testing")
    assert "/run/haproxy/admin.sock" in str(exc.value)
    assert sleeps == [] and fake_socket.attempts == 1
