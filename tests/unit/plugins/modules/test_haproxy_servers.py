"""haproxy_servers against a real haproxy 2.6 (the ``haproxy`` fixture of tests/unit/conftest.py).

Every assertion about the load balancer reads it back through the admin socket with the fixture's own helper,
independently of the module.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ansible_collections.strata.deploy.plugins.modules import haproxy_servers

APP = [f"app{i}" for i in range(1, 5)]


def lb_state(haproxy) -> dict[str, dict[str, tuple[int, int]]]:
    """``backend -> server -> (user weight, admin state bits)`` from ``show servers state``."""
    lines = haproxy.command("show servers state").splitlines()
    fields = lines[1].lstrip("#").split()
    state: dict[str, dict[str, tuple[int, int]]] = {}
    for line in lines[2:]:
        if line.strip():
            row = dict(zip(fields, line.split(), strict=True))
            state.setdefault(row["be_name"], {})[row["srv_name"]] = (
                int(row["srv_uweight"]),
                int(row["srv_admin_state"]),
            )
    return state


def args(haproxy, **extra):
    return {"socket": haproxy.socket_path, "state_file": haproxy.state_file, "timeout": 5, **extra}


SPLIT_10 = {"percent": 10, "backends": {"app": {"stable": APP[:3], "canary": APP[3:]}}}


def test_split_and_states_in_one_batch_are_applied_and_read_back(haproxy, run_module):
    run = run_module(
        haproxy_servers.main,
        args(
            haproxy,
            split=SPLIT_10,
            servers={"api": {"api19": {"state": "drain"}, "api20": {"weight": 0, "state": "maint"}}},
        ),
    )

    assert not run.failed, run.result
    result = run.result
    assert result["changed"] is True
    assert result["round_trips"] == 1, "every command of every backend in one round trip"
    assert 0 <= result["elapsed"] < 1
    assert {(c["backend"], c["server"]) for c in result["changes"]} == {
        *(("app", s) for s in APP),
        ("api", "api19"),
        ("api", "api20"),
    }
    weights = {"app1": 256, "app2": 256, "app3": 256, "app4": 85}
    assert {s: v["weight"] for s, v in result["read_back"]["app"].items()} == weights
    assert result["read_back"]["api"]["api20"] == {"weight": 0, "state": "maint"}
    assert set(result["read_back"]) == {"app", "api"}, "only the backends of the task"
    lb = lb_state(haproxy)
    assert {s: w for s, (w, _bits) in lb["app"].items()} == weights
    assert lb["api"]["api19"] == (10, 0x08), "drain (ADMF_FDRAIN), weight kept"
    assert lb["api"]["api20"][0] == 0 and lb["api"]["api20"][1] & 0x01, "maint (ADMF_FMAINT)"
    assert lb["static"] == {"st1": (100, 0), "st2": (100, 0)}, "other backends untouched"
    assert result["state_file"] == haproxy.state_file
    saved = Path(haproxy.state_file).read_text()
    assert " app4 " in saved and saved.startswith("1\n")


def test_second_run_changes_nothing(haproxy, run_module):
    first = run_module(haproxy_servers.main, args(haproxy, split=SPLIT_10))
    assert first.result["changed"] is True
    mtime = Path(haproxy.state_file).stat().st_mtime_ns

    second = run_module(haproxy_servers.main, args(haproxy, split=SPLIT_10))

    assert not second.failed
    assert second.result["changed"] is False
    assert second.result["changes"] == [] and second.result["commands"] == []
    assert second.result["round_trips"] == 0 and second.result["state_file"] is None
    assert Path(haproxy.state_file).stat().st_mtime_ns == mtime, "state file not rewritten"


def test_check_mode_predicts_and_changes_nothing(haproxy, run_module):
    before = lb_state(haproxy)

    run = run_module(haproxy_servers.main, args(haproxy, split=SPLIT_10), check=True)

    assert not run.failed
    assert run.result["changed"] is True
    assert "set server app/app4 weight 85" in run.result["commands"]
    assert len(run.result["changes"]) == 4
    assert run.result["round_trips"] == 0
    assert lb_state(haproxy) == before, "check mode sent nothing"
    assert not Path(haproxy.state_file).exists(), "check mode wrote no state file"


def test_diff_is_a_weight_state_table(haproxy, run_module):
    run = run_module(
        haproxy_servers.main, args(haproxy, servers={"app": {"app2": {"weight": 7, "state": "drain"}}}), diff=True
    )

    diff = run.result["diff"]
    assert diff["before"].split("\n")[0].split() == ["lb", "backend", "server", "weight", "state"]
    assert diff["before"].split("\n")[1].split() == ["haproxy", "app", "app2", "100", "ready"]
    assert diff["after"].split("\n")[1].split() == ["haproxy", "app", "app2", "7", "drain"]
    assert haproxy.socket_path in diff["before_header"]


def test_unknown_server_fails_before_anything_changes(haproxy, run_module):
    before = lb_state(haproxy)

    run = run_module(
        haproxy_servers.main,
        args(haproxy, servers={"app": {"app1": {"weight": 1}, "app9": {"weight": 1}}}),
    )

    assert run.failed
    assert "app/app9: no such server in backend app (known servers: app1, app2, app3, app4)" in run.result["msg"]
    assert "nothing was changed" in run.result["msg"]
    assert run.result["error_type"] == "UnknownTargetError"
    assert lb_state(haproxy) == before, "app1 was not changed either"


def test_unknown_backend_fails_before_anything_changes(haproxy, run_module):
    before = lb_state(haproxy)
    split = {"percent": 50, "backends": {"nope": {"stable": ["a"], "canary": ["b"]}}}

    run = run_module(haproxy_servers.main, args(haproxy, split=split, servers={"app": {"app1": {"weight": 1}}}))

    assert run.failed and "no such backend" in run.result["msg"] and "nothing was changed" in run.result["msg"]
    assert lb_state(haproxy) == before


def test_missing_socket_names_the_path_and_what_to_check(tmp_path, run_module):
    path = str(tmp_path / "missing.sock")

    run = run_module(haproxy_servers.main, {"socket": path, "servers": {"app": {"app1": {"weight": 1}}}})

    assert run.failed
    assert path in run.result["msg"]
    assert "stats socket" in run.result["msg"] and "nothing was changed" in run.result["msg"]
    assert run.result["error_type"] == "HAProxySocketError"


def test_socket_without_permission_says_what_to_check(haproxy, run_module):
    request = {"socket": haproxy.socket_path, "servers": {"app": {"app1": {"weight": 1}}}}
    if os.geteuid() == 0:  # root ignores file modes: run the module as nobody (the socket is root's, mode 600)
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.fail("setpriv (util-linux) is needed to run the module as nobody", pytrace=False)
        done = subprocess.run(
            [
                setpriv,
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                sys.executable,
                "-m",
                haproxy_servers.__name__,
            ],
            input=json.dumps({"ANSIBLE_MODULE_ARGS": request}),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        result = json.loads(done.stdout)
    else:
        os.chmod(haproxy.socket_path, 0)
        result = run_module(haproxy_servers.main, request).result
    assert result.get("failed"), result
    assert "permission denied" in result["msg"] and haproxy.socket_path in result["msg"]
    assert "socket's group" in result["msg"], "says what to check"


def test_weight_set_by_split_and_servers_is_refused(haproxy, run_module):
    run = run_module(haproxy_servers.main, args(haproxy, split=SPLIT_10, servers={"app": {"app4": {"weight": 3}}}))

    assert run.failed
    assert run.result["param"] == "servers.app.app4.weight"
    assert "set it in one place" in run.result["msg"]


def test_split_may_come_with_states(haproxy, run_module):
    haproxy.command("set server app/app4 state maint")

    run = run_module(haproxy_servers.main, args(haproxy, split=SPLIT_10, servers={"app": {"app4": {"state": "ready"}}}))

    assert not run.failed, run.result
    assert run.result["read_back"]["app"]["app4"] == {"weight": 85, "state": "ready"}
    assert lb_state(haproxy)["app"]["app4"] == (85, 0)


def test_bad_weight_names_the_parameter(haproxy, run_module):
    run = run_module(haproxy_servers.main, args(haproxy, servers={"app": {"app1": {"weight": 300}}}))

    assert run.failed and run.result["param"] == "servers.app.app1.weight" and "256" in run.result["msg"]


def test_state_file_keeps_the_state_across_a_reload(haproxy, run_module):
    run = run_module(haproxy_servers.main, args(haproxy, servers={"app": {"app3": {"weight": 42, "state": "drain"}}}))
    assert run.result["changed"]

    haproxy.reload()

    assert lb_state(haproxy)["app"]["app3"] == (42, 0x08)


def test_stale_state_file_is_rewritten_once(haproxy, run_module):
    desired = args(haproxy, servers={"app": {"app1": {"weight": 50}}})
    assert run_module(haproxy_servers.main, desired).result["changed"]
    Path(haproxy.state_file).unlink()

    again = run_module(haproxy_servers.main, desired)

    assert again.result["changed"] is True and again.result["changes"] == []
    assert again.result["state_file"] == haproxy.state_file and Path(haproxy.state_file).exists()
    assert run_module(haproxy_servers.main, desired).result["changed"] is False


def test_empty_state_file_option_writes_no_file(haproxy, run_module):
    run = run_module(haproxy_servers.main, args(haproxy, state_file="", servers={"app": {"app1": {"weight": 5}}}))

    assert run.result["changed"] and run.result["state_file"] is None
    assert not Path(haproxy.state_file).exists()


def test_wait_drained_returns_once_sessions_are_gone(haproxy, run_module):
    started = time.monotonic()
    run = run_module(
        haproxy_servers.main,
        args(haproxy, servers={"app": {"app2": {"state": "drain"}}}, wait_drained=True, drain_timeout=5),
    )

    assert not run.failed, run.result
    assert run.result["sessions_left"] == {}
    assert time.monotonic() - started < 3


def test_wait_drained_fails_and_lists_the_open_sessions(haproxy, run_module):
    # Only app1 takes traffic, so the one connection through the frontend is app1's.
    for name in APP[1:]:
        haproxy.command(f"set server app/{name} weight 0")
    conn = socket.create_connection(("127.0.0.1", haproxy.frontend_port), timeout=2)
    try:
        haproxy.wait_until(
            lambda: any(
                line.startswith("app,app1,") and int(line.split(",")[4] or 0) == 1
                for line in haproxy.command("show stat").splitlines()
            ),
            5,
            "app1's session",
        )
        started = time.monotonic()
        run = run_module(
            haproxy_servers.main,
            args(haproxy, servers={"app": {"app1": {"state": "drain"}}}, wait_drained=True, drain_timeout=0.6),
        )
        waited = time.monotonic() - started
    finally:
        conn.close()

    assert run.failed
    assert run.result["sessions_left"] == {"app/app1": 1}
    assert "app/app1 (1)" in run.result["msg"] and "the weights and states are applied" in run.result["msg"]
    assert 0.5 <= waited < 3, "bounded by drain_timeout"
    assert lb_state(haproxy)["app"]["app1"][1] == 0x08, "the drain stays applied"


def test_rejected_command_reports_what_was_applied(haproxy, run_module):
    # static-rr backends only take weights 0% or 100%: haproxy rejects the st1 command, and applies app1's.
    run = run_module(
        haproxy_servers.main, args(haproxy, servers={"app": {"app1": {"weight": 7}}, "static": {"st1": {"weight": 50}}})
    )

    assert run.failed and run.result["error_type"] == "HAProxyCommandError"
    assert "rejected 1 of 2 command(s)" in run.result["msg"]
    assert "the other commands were applied; read_back shows what HAProxy holds now" in run.result["msg"]
    assert run.result["read_back"]["app"]["app1"] == {"weight": 7, "state": "ready"}
    assert run.result["read_back"]["static"]["st1"] == {"weight": 100, "state": "ready"}
    assert lb_state(haproxy)["app"]["app1"] == (7, 0) and lb_state(haproxy)["static"]["st1"] == (100, 0)


def test_unwritable_state_file_says_the_change_is_applied_but_not_saved(haproxy, tmp_path, run_module):
    state_file = str(tmp_path / "missing-dir" / "server-state")

    run = run_module(
        haproxy_servers.main, args(haproxy, state_file=state_file, servers={"app": {"app1": {"weight": 9}}})
    )

    assert run.failed and state_file in run.result["msg"]
    assert "the weights and states are applied, but a reload of HAProxy would revert them" in run.result["msg"]
    assert lb_state(haproxy)["app"]["app1"] == (9, 0)
