"""The HAProxy client against a real haproxy 2.6 started by the ``haproxy`` fixture (tests/unit/conftest.py)."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._haproxy.client import (
    HAProxyClient,
    HAProxyCommandError,
    HAProxyConflictError,
    HAProxySocketError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import UnknownTargetError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import Change, ServerState
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import HAPROXY, server_weights

APP = [f"app{i}" for i in range(1, 5)]  # as configured by the haproxy fixture
API = [f"api{i:02d}" for i in range(1, 21)]


@pytest.fixture
def client(haproxy):
    return HAProxyClient(haproxy.socket_path, timeout=5)


def weights_of(state, backend):
    return {server: value.weight for server, value in state[backend].items()}


def test_reads_the_configured_state(client, haproxy):
    assert haproxy.app_servers == APP and haproxy.api_servers == API
    state = client.current_state()
    assert set(state) == {"app", "api", "static"}
    assert state["app"] == {name: ServerState(100, "ready") for name in APP}
    assert state["api"] == {name: ServerState(10, "ready") for name in API}
    records = client.show_servers_state("api")
    assert len(records) == 20 and all(r.op_state == "running" and r.iweight == 10 for r in records)
    assert {s.server for s in client.show_stat("app")} == set(APP)


def test_batch_of_many_servers_in_many_backends_is_one_round_trip(client):
    app = server_weights(10, APP[:3], APP[3:], HAPROXY)
    desired = {
        "app": {name: {"weight": weight} for name, weight in app.items()},
        "api": {name: {"weight": 20 + i} for i, name in enumerate(API[:18])},
    }
    desired["api"]["api19"] = {"state": "drain"}
    desired["api"]["api20"] = {"weight": 0, "state": "maint"}

    result = client.converge(desired)

    assert result.changed
    assert result.applied is not None
    assert result.applied.round_trips == 1
    assert len(result.changes) == 4 + 20
    assert len(result.commands) == 4 + 18 + 1 + 2
    read_back = client.current_state()
    assert weights_of(read_back, "app") == {"app1": 256, "app2": 256, "app3": 256, "app4": 85}
    assert read_back["api"]["api05"] == ServerState(24, "ready")
    assert read_back["api"]["api19"] == ServerState(10, "drain")
    assert read_back["api"]["api20"] == ServerState(0, "maint")
    assert result.applied.read_back == read_back
    assert [row.changed for row in result.rows].count(True) == 24

    again = client.converge(desired)
    assert not again.changed and again.changes == [] and again.applied is None


def test_check_mode_sends_nothing(client):
    before = client.current_state()
    result = client.converge({"app": {"app1": {"weight": 1}}}, check_mode=True)
    assert result.changed and result.commands == ["set server app/app1 weight 1"] and result.applied is None
    assert client.current_state() == before


def test_four_weight_changes_are_fast(client):
    changes = [Change("app", name, ServerState(100), ServerState(50)) for name in APP]
    result = client.apply(changes)
    assert result.round_trips == 1
    assert result.elapsed < 0.5, f"a batch of 4 weight changes took {result.elapsed * 1000:.1f} ms"


def test_unknown_server_is_rejected_before_anything_changes(client):
    before = client.current_state()
    changes = [
        Change("app", "app1", ServerState(100), ServerState(1)),
        Change("app", "nope", ServerState(100), ServerState(1)),
    ]
    with pytest.raises(UnknownTargetError, match="no such server 'nope' in backend 'app'"):
        client.apply(changes)
    with pytest.raises(UnknownTargetError, match="no such backend 'web'"):
        client.apply(
            [
                Change("app", "app2", ServerState(100), ServerState(1)),
                Change("web", "w1", ServerState(1), ServerState(2)),
            ]
        )
    with pytest.raises(UnknownTargetError, match=r"desired\.app\.app9"):
        client.converge({"app": {"app1": {"weight": 5}, "app9": {"weight": 5}}})
    assert client.current_state() == before


def test_stale_changes_are_a_conflict_and_change_nothing(client, haproxy):
    _current, changes, _rows = client.plan({"app": {"app1": {"weight": 30}, "app2": {"weight": 30}}})
    haproxy.command("set server app/app2 weight 77")
    with pytest.raises(HAProxyConflictError, match="app/app2 shows weight 77"):
        client.apply(changes)
    assert weights_of(client.current_state(), "app")["app1"] == 100


def test_haproxy_errors_name_the_command(client):
    with pytest.raises(HAProxyCommandError) as exc:
        client.show_servers_state("missing")
    assert exc.value.command == "show servers state missing"
    assert "Can't find backend" in str(exc.value)
    # static-rr only accepts weights 0% and 100%: haproxy rejects the command, the others are applied
    changes = [
        Change("static", "st1", ServerState(100), ServerState(50)),
        Change("app", "app1", ServerState(100), ServerState(42)),
    ]
    with pytest.raises(HAProxyCommandError, match="rejected 1 of 2") as exc:
        client.apply(changes)
    assert exc.value.command == "set server static/st1 weight 50"
    assert "static LB algorithm" in str(exc.value)
    assert client.current_state()["app"]["app1"].weight == 42


def test_missing_socket_names_the_path(tmp_path):
    path = str(tmp_path / "no" / "admin.sock")
    with pytest.raises(HAProxySocketError) as exc:
        HAProxyClient(path, timeout=1).current_state()
    assert exc.value.path == path
    assert path in str(exc.value) and "does not exist" in str(exc.value) and "stats socket" in str(exc.value)


def test_socket_without_listener_is_retried_then_reported(tmp_path):
    path = str(tmp_path / "dead.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # bound, never listening: connect() is refused
    try:
        sleeps = []
        client = HAProxyClient(path, timeout=1, retries=2, sleep=sleeps.append)
        with pytest.raises(HAProxySocketError, match=r"refused the connection 3 time\(s\)"):
            client.show_info()
        assert len(sleeps) == 2
    finally:
        dead.close()


def test_wait_drained(client, haproxy):
    client.converge({"app": {name: {"state": "maint"} for name in APP[1:]}})
    conn = socket.create_connection(("127.0.0.1", haproxy.frontend_port), timeout=5)
    try:
        haproxy.wait_until(
            lambda: {s.server: s.scur for s in client.show_stat("app")}["app1"] == 1, 5, "a session on app1"
        )
        client.converge({"app": {"app1": {"state": "drain"}}})

        started = time.monotonic()
        left = client.wait_drained(["app/app1", ("app", "app2")], drain_timeout=0.3, poll_interval=0.05)
        assert left == {("app", "app1"): 1}
        assert 0.25 <= time.monotonic() - started < 2

        closer = threading.Timer(0.3, conn.close)
        closer.start()
        started = time.monotonic()
        left = client.wait_drained(["app/app1"], drain_timeout=10, poll_interval=0.05)
        closer.join()
        assert left == {}
        assert time.monotonic() - started < 5
    finally:
        conn.close()
    with pytest.raises(UnknownTargetError, match="app/zz"):
        client.wait_drained(["app/zz"], drain_timeout=1)


def test_save_state_keeps_runtime_weights_across_a_reload(client, haproxy):
    desired = {
        "app": {"app1": {"weight": 7}, "app2": {"weight": 200, "state": "drain"}, "app3": {"state": "maint"}},
        "api": {"api01": {"weight": 0}},
    }
    result = client.converge(desired, state_file=haproxy.state_file)
    assert result.applied is not None and result.applied.state_file == haproxy.state_file
    with open(haproxy.state_file, encoding="utf-8") as handle:
        saved = handle.read()
    assert saved.startswith("1\n# be_id be_name") and " app1 " in saved
    assert not [name for name in os.listdir(haproxy.root) if name.endswith(".tmp")], "no temporary file left"
    before = client.current_state()

    haproxy.reload()

    assert client.current_state() == before
    assert client.current_state()["app"]["app2"] == ServerState(200, "drain")
    assert not client.converge(desired).changed


def test_reload_without_saving_reverts_runtime_weights(client, haproxy):
    """The control for the test above: without a saved state, a reload forgets the runtime changes."""
    client.converge({"app": {"app1": {"weight": 7}}})
    haproxy.reload()
    assert client.current_state()["app"]["app1"] == ServerState(100, "ready")


def test_save_state_is_atomic_and_reports_unwritable_paths(client, tmp_path):
    target = tmp_path / "state"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    assert client.save_state(str(target)) == 4 + 20 + 2
    assert target.read_text().startswith("1\n")
    assert oct(os.stat(target).st_mode & 0o777) == "0o640"
    with pytest.raises(Exception, match="cannot write the server state file"):
        client.save_state(str(tmp_path / "missing-dir" / "state"))
