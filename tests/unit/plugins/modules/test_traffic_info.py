"""traffic_info against the real haproxy and nginx fixtures of tests/unit/conftest.py."""

from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.modules import haproxy_servers, nginx_upstream, traffic_info

APP = [f"app{i}" for i in range(1, 5)]


def test_haproxy_split_is_read_back(haproxy, run_module):
    split = {"percent": 10, "backends": {"app": {"stable": APP[:3], "canary": APP[3:]}}}
    assert run_module(haproxy_servers.main, {"socket": haproxy.socket_path, "state_file": "", "split": split}).result[
        "changed"
    ]
    haproxy.command("set server api/api01 state drain")

    run = run_module(
        traffic_info.main,
        {"provider": "haproxy", "socket": haproxy.socket_path, "canary": {"app": ["app4"], "api": ["api01"]}},
    )

    assert not run.failed, run.result
    result = run.result
    assert result["changed"] is False and result["source"] == haproxy.socket_path
    assert set(result["servers"]) == {"app", "api", "static"}
    assert result["servers"]["app"]["app4"] == {"weight": 85, "state": "ready"}
    assert result["observed_split"]["app"] == {
        "canary": ["app4"],
        "canary_weight": 85,
        "total_weight": 853,
        "percent": pytest.approx(9.9648, abs=1e-4),
    }
    assert result["observed_split"]["api"]["percent"] == 0.0, "a draining server gets no new connection"


def test_backends_filter_and_check_mode(haproxy, run_module):
    run = run_module(
        traffic_info.main, {"provider": "haproxy", "socket": haproxy.socket_path, "backends": ["static"]}, check=True
    )

    assert not run.failed
    assert run.result["servers"] == {
        "static": {"st1": {"weight": 100, "state": "ready"}, "st2": {"weight": 100, "state": "ready"}}
    }
    assert run.result["observed_split"] == {}


def test_unknown_backend_or_canary_fails(haproxy, run_module):
    run = run_module(traffic_info.main, {"provider": "haproxy", "socket": haproxy.socket_path, "backends": ["web"]})
    assert run.failed and "web" in run.result["msg"] and "known: api, app, static" in run.result["msg"]

    run = run_module(
        traffic_info.main, {"provider": "haproxy", "socket": haproxy.socket_path, "canary": {"app": ["app9"]}}
    )
    assert run.failed and run.result["param"] == "canary.app" and "app9" in run.result["msg"]


def test_missing_socket_is_explained(tmp_path, run_module):
    path = str(tmp_path / "admin.sock")

    run = run_module(traffic_info.main, {"provider": "haproxy", "socket": path})

    assert run.failed and path in run.result["msg"] and "stats socket" in run.result["msg"]


def test_nginx_split_is_read_back(nginx, run_module):
    a, b, c = (nginx.address(n) for n in "abc")
    request = {
        "upstream": "app",
        "path": str(nginx.upstream_file),
        "test_command": " ".join(nginx.test_command),
        "reload_command": " ".join(nginx.reload_command),
        "split": {"percent": 50, "stable": [a, b], "canary": [c]},
        "servers": {b: {"state": "maint"}},
    }
    assert run_module(nginx_upstream.main, request).result["changed"]

    run = run_module(
        traffic_info.main,
        {"provider": "nginx", "path": str(nginx.upstream_file), "upstream": "app", "canary": {"app": [c]}},
    )

    assert not run.failed, run.result
    assert run.result["servers"]["app"][b] == {"weight": 50, "state": "maint"}
    assert run.result["observed_split"]["app"]["percent"] == pytest.approx(100 * 100 / 150)
    assert run.result["source"] == str(nginx.upstream_file)


def test_nginx_needs_a_path_or_an_upstream(run_module):
    run = run_module(traffic_info.main, {"provider": "nginx"})

    assert run.failed and run.result["param"] == "path"
