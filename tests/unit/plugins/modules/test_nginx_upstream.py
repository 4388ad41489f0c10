"""nginx_upstream against a real nginx 1.22 (the ``nginx`` fixture of tests/unit/conftest.py).

The test and reload commands go through a wrapper that logs each call, so the tests can count them; traffic is
checked with real requests through nginx.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from ansible_collections.strata.deploy.plugins.modules import nginx_upstream

REQUESTS = 100


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    return tmp_path / "calls.log"


@pytest.fixture
def base(nginx, tmp_path: Path, calls: Path):
    """Module arguments for the fixture's upstream ``app``, with logged test/reload commands."""
    wrapper = tmp_path / "logged"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(calls))}\nexec "$@"\n')
    wrapper.chmod(0o755)
    return {
        "upstream": "app",
        "path": str(nginx.upstream_file),
        "test_command": shlex.join([str(wrapper), *nginx.test_command]),
        "reload_command": shlex.join([str(wrapper), *nginx.reload_command]),
        "timeout": 20,
    }


def logged(calls: Path) -> list[str]:
    """``test``/``reload`` for each logged command."""
    if not calls.exists():
        return []
    return ["test" if line.endswith(" -t") else "reload" for line in calls.read_text().splitlines()]


def test_split_is_applied_with_one_test_and_one_reload(nginx, base, calls, run_module):
    a, b, c = (nginx.address(n) for n in "abc")
    old_workers = nginx.workers()

    run = run_module(nginx_upstream.main, {**base, "split": {"percent": 50, "stable": [a, b], "canary": [c]}})

    assert not run.failed, run.result
    assert run.result["changed"] is True
    assert logged(calls) == ["test", "reload"], "one test and one reload for three servers"
    assert 0 <= run.result["reload_seconds"] < 5
    ready = {"state": "ready"}
    assert run.result["read_back"] == {
        "app": {a: {"weight": 50, **ready}, b: {"weight": 50, **ready}, c: {"weight": 100, **ready}}
    }
    assert f"server {c} weight=100;" in nginx.upstream_file.read_text()
    nginx.wait_reloaded(old_workers)
    seen = nginx.hits(REQUESTS)
    assert sum(seen.values()) == REQUESTS
    assert 45 <= seen["c"] <= 55 and 20 <= seen["a"] <= 30 and 20 <= seen["b"] <= 30, seen


def test_second_run_changes_nothing_and_runs_nothing(nginx, base, calls, run_module):
    a, c = nginx.address("a"), nginx.address("c")
    request = {**base, "servers": {a: {"weight": 3}, c: {"weight": 0}}}
    assert run_module(nginx_upstream.main, request).result["changed"]
    text = nginx.upstream_file.read_text()

    again = run_module(nginx_upstream.main, request)

    assert again.result["changed"] is False and again.result["changes"] == []
    assert again.result["reload_seconds"] is None
    assert logged(calls) == ["test", "reload"], "nothing ran the second time"
    assert nginx.upstream_file.read_text() == text


def test_check_mode_writes_and_runs_nothing(nginx, base, calls, run_module):
    text = nginx.upstream_file.read_text()

    run = run_module(nginx_upstream.main, {**base, "servers": {nginx.address("a"): {"state": "maint"}}}, check=True)

    assert not run.failed and run.result["changed"] is True
    assert run.result["changes"][0]["after"] == {"weight": 1, "state": "maint"}
    assert nginx.upstream_file.read_text() == text, "file untouched"
    assert logged(calls) == [], "no test, no reload"
    assert nginx.hits(30) == {"a": 10, "b": 10, "c": 10}


def test_diff_has_the_table_and_the_file(nginx, base, run_module):
    a = nginx.address("a")

    run = run_module(nginx_upstream.main, {**base, "servers": {a: {"weight": 0}}}, diff=True, check=True)

    table, file_diff = run.result["diff"]
    assert table["before"].split("\n")[1].split() == ["nginx", "app", a, "1", "ready"]
    assert table["after"].split("\n")[1].split() == ["nginx", "app", a, "0", "ready"]
    assert f"server {a} weight=1;" in file_diff["before"]
    assert f"server {a} down;" in file_diff["after"]
    assert file_diff["before_header"] == str(nginx.upstream_file)


def test_unknown_address_fails_before_writing(nginx, base, calls, run_module):
    text = nginx.upstream_file.read_text()

    run = run_module(
        nginx_upstream.main, {**base, "servers": {nginx.address("a"): {"weight": 5}, "10.9.9.9:80": {"weight": 1}}}
    )

    assert run.failed
    assert "10.9.9.9:80" in run.result["msg"] and "nothing was changed" in run.result["msg"]
    assert nginx.upstream_file.read_text() == text and logged(calls) == []


def test_failed_test_restores_the_file_and_does_not_reload(nginx, base, calls, run_module):
    text = nginx.upstream_file.read_text()

    run = run_module(
        nginx_upstream.main,
        {
            **base,
            "test_command": "sh -c 'echo emerg: broken >&2; exit 1'",
            "servers": {nginx.address("a"): {"weight": 9}},
        },
    )

    assert run.failed
    assert "emerg: broken" in run.result["msg"] and "the previous file" in run.result["msg"]
    assert run.result["error_type"] == "NginxConfigError"
    assert nginx.upstream_file.read_text() == text
    assert logged(calls) == [], "no reload"


def test_missing_file_says_so(tmp_path, run_module):
    path = tmp_path / "none.conf"

    run = run_module(nginx_upstream.main, {"upstream": "app", "path": str(path), "servers": {"a:1": {"weight": 1}}})

    assert run.failed and str(path) in run.result["msg"] and "does not exist" in run.result["msg"]


def test_default_path_is_the_roles_file(run_module):
    run = run_module(nginx_upstream.main, {"upstream": "web", "servers": {"a:1": {"weight": 1}}}, check=True)

    assert run.failed, "no nginx role on this machine"
    assert "/etc/nginx/strata/upstreams/web.conf" in run.result["msg"]
