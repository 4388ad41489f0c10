"""Rendering, parsing and the weight/state mapping of the nginx upstream file, and the client without nginx."""

from __future__ import annotations

import subprocess

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._nginx.client import (
    HEADER,
    NginxClient,
    NginxCommandError,
    NginxConfigError,
    NginxConflictError,
    NginxError,
    NginxParseError,
    Upstream,
    UpstreamServer,
    apply_changes,
    normalise,
    parse_upstreams,
    render_upstreams,
    upstreams_from_spec,
    upstreams_state,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficSpecError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import Change, ServerState

SPEC = [
    {
        "name": "app",
        "directives": ["least_conn", "keepalive 16"],
        "servers": [
            {"address": "10.0.0.1:8080", "weight": 3, "max_fails": 2, "fail_timeout": "10s"},
            {"address": "10.0.0.2:8080", "weight": 0},
            {"address": "10.0.0.3:8080", "weight": 5, "state": "maint"},
            {"address": "10.0.0.4:8080", "state": "drain", "backup": True, "max_conns": 100},
            {"address": "unix:/run/app.sock"},
        ],
    },
    {"name": "api", "zone": None, "servers": [{"address": "10.0.1.1:9000", "fail_timeout": 30}]},
]

RENDERED = (
    HEADER
    + """upstream app {
    zone app 64k;
    least_conn;
    keepalive 16;
    server 10.0.0.1:8080 weight=3 max_fails=2 fail_timeout=10s;
    server 10.0.0.2:8080 down;
    server 10.0.0.3:8080 weight=5 down;
    server 10.0.0.4:8080 weight=1 max_conns=100 backup down;
    server unix:/run/app.sock weight=1;
}

upstream api {
    server 10.0.1.1:9000 weight=1 fail_timeout=30;
}
"""
)


def test_render():
    assert render_upstreams(upstreams_from_spec(SPEC)) == RENDERED


def test_parse_round_trip():
    upstreams = upstreams_from_spec(SPEC)
    assert parse_upstreams(RENDERED) == upstreams
    assert render_upstreams(parse_upstreams(RENDERED)) == RENDERED


def test_state_mapping():
    state = upstreams_state(upstreams_from_spec(SPEC))
    assert state["app"] == {
        "10.0.0.1:8080": ServerState(3, "ready"),
        "10.0.0.2:8080": ServerState(0, "ready"),  # weight 0 is written as a bare `down`
        "10.0.0.3:8080": ServerState(5, "maint"),
        "10.0.0.4:8080": ServerState(1, "maint"),  # nginx has no drain
        "unix:/run/app.sock": ServerState(1, "ready"),
    }


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (ServerState(5, "ready"), ServerState(5, "ready")),
        (ServerState(5, "drain"), ServerState(5, "maint")),
        (ServerState(5, "maint"), ServerState(5, "maint")),
        (ServerState(0, "maint"), ServerState(0, "ready")),
        (ServerState(0, "drain"), ServerState(0, "ready")),
    ],
)
def test_normalise_round_trips_through_the_file(target, expected):
    assert normalise(target) == expected
    server = UpstreamServer("127.0.0.1:1", weight=9).with_state(target)
    assert parse_upstreams(render_upstreams([Upstream("u", (server,))]))[0].servers[0].as_state() == expected


def test_parse_tolerates_hand_written_files():
    text = """
    # a comment
    upstream   app{server 127.0.0.1:1;server "127.0.0.1:2" weight=2 slow_start=10s ; # trailing
      hash $request_uri consistent;
      zone shared 1m;
    }
    upstream other { server 127.0.0.1:3 down; }
    """
    app, other = parse_upstreams(text)
    assert app.servers[0] == UpstreamServer("127.0.0.1:1")
    assert app.servers[1] == UpstreamServer("127.0.0.1:2", weight=2, extra=("slow_start=10s",))
    assert app.directives == (("hash", "$request_uri", "consistent"), ("zone", "shared", "1m"))
    assert app.zone is None
    assert upstreams_state([app, other]) == {
        "app": {"127.0.0.1:1": ServerState(1), "127.0.0.1:2": ServerState(2)},
        "other": {"127.0.0.1:3": ServerState(0)},
    }


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("server 127.0.0.1:1;", 1, "expected 'upstream NAME {'"),
        ("upstream app {\n server 127.0.0.1:1;\n", 1, "not closed"),
        ("upstream app {\n server 127.0.0.1:1\n}", 2, "expected ';'"),
        ("upstream app {\n server 127.0.0.1:1 weight=0;\n}", 2, "invalid server parameter 'weight=0'"),
        ("upstream app {\n server 127.0.0.1:1 weight=x;\n}", 2, "invalid server parameter"),
        ("upstream app {\n server a:1;\n server a:1;\n}", 3, "listed twice"),
        ("upstream app { server a:1; }\nupstream app { server b:1; }", 2, "defined twice"),
        ("upstream app {\n server;\n}", 2, "without an address"),
        ("upstream app {\n location / { }\n}", 2, "expected ';'"),
        ("upstream app {\n server 'a:1;\n}", 2, "unterminated"),
    ],
)
def test_parse_errors_say_where(text, line, message):
    with pytest.raises(NginxParseError) as exc:
        parse_upstreams(text, "/etc/nginx/conf.d/upstreams.conf")
    assert exc.value.line == line
    assert str(exc.value).startswith(f"/etc/nginx/conf.d/upstreams.conf:{line}: ")
    assert message in str(exc.value)


def servers(*items):
    return [{"name": "app", "servers": list(items)}]


@pytest.mark.parametrize(
    ("spec", "param", "text"),
    [
        ({}, "upstreams", "expected a list"),
        ([{"name": "app"}], "upstreams[0].servers", "non-empty list"),
        ([{"name": "a b", "servers": [{"address": "x:1"}]}], "upstreams[0].name", "upstream name"),
        ([{"name": "app", "servers": [{"address": "x:1"}], "port": 1}], "upstreams[0]", "unknown key(s) port"),
        (servers({"weight": 1}), "upstreams[0].servers[0]", "expected 'address'"),
        (servers({"address": "x:1; evil"}), "upstreams[0].servers[0].address", "without"),
        (servers({"address": "x:1", "weight": -1}), "upstreams[0].servers[0].weight", "0 or"),
        (servers({"address": "x:1", "state": "up"}), "upstreams[0].servers[0].state", "ready"),
        (servers({"address": "x:1", "fail_timeout": "soon"}), "upstreams[0].servers[0].fail_timeout", "time"),
        (servers({"address": "x:1", "backup": "no"}), "upstreams[0].servers[0].backup", "true"),
        (servers({"address": "x:1", "down": True}), "upstreams[0].servers[0]", "unknown key(s) down"),
        (servers({"address": "x:1"}, {"address": "x:1"}), "upstreams[0].servers", "twice"),
        ([{"name": "app", "zone": "big", "servers": [{"address": "x:1"}]}], "upstreams[0].zone", "size"),
        (
            [{"name": "app", "directives": ["server x:2"], "servers": [{"address": "x:1"}]}],
            "upstreams[0].directives[0]",
            "use 'servers'",
        ),
        (servers({"address": "x:1"}) + servers({"address": "x:1"}), "upstreams[1].name", "twice"),
    ],
)
def test_spec_errors_name_the_parameter(spec, param, text):
    with pytest.raises(TrafficSpecError) as exc:
        upstreams_from_spec(spec)
    assert exc.value.param == param
    assert text in exc.value.message


def test_apply_changes_keeps_other_settings():
    upstreams = upstreams_from_spec(SPEC)
    changes = [
        Change("app", "10.0.0.1:8080", ServerState(3), ServerState(0)),
        Change("app", "10.0.0.2:8080", ServerState(0), ServerState(7)),
    ]
    app = apply_changes(upstreams, changes)[0]
    assert app.servers[0] == UpstreamServer("10.0.0.1:8080", down=True, max_fails=2, fail_timeout="10s")
    assert app.servers[1] == UpstreamServer("10.0.0.2:8080", weight=7)
    assert app.directives == upstreams[0].directives


class Recorder:
    """Stands in for subprocess.run: records commands, fails the ones listed in ``fail``."""

    def __init__(self, fail=(), output="nginx: [emerg] invalid port in upstream"):
        self.calls = []
        self.fail = fail
        self.output = output

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        assert kwargs["timeout"] > 0, "every command has a timeout"
        code = 1 if any(word in argv for word in self.fail) else 0
        return subprocess.CompletedProcess(argv, code, stdout=self.output if code else "ok")


@pytest.fixture
def upstream_file(tmp_path):
    path = tmp_path / "upstreams.conf"
    path.write_text(RENDERED)
    return path


def test_converge_writes_tests_and_reloads_once(upstream_file):
    run = Recorder()
    client = NginxClient(str(upstream_file), conf_path="/x/nginx.conf", run=run)
    desired = {
        "app": {"10.0.0.1:8080": {"weight": 1}, "10.0.0.2:8080": {"weight": 4}, "10.0.0.3:8080": {"state": "ready"}}
    }
    result = client.converge(desired)
    assert result.changed and len(result.changes) == 3
    assert run.calls == [["nginx", "-t", "-c", "/x/nginx.conf"], ["nginx", "-c", "/x/nginx.conf", "-s", "reload"]]
    assert result.reload_seconds is not None and result.reload_seconds >= 0
    assert client.current_state()["app"]["10.0.0.3:8080"] == ServerState(5, "ready")
    assert [r.changed for r in result.rows] == [True, True, True]
    again = client.converge(desired)
    assert not again.changed and len(run.calls) == 2


def test_check_mode_writes_nothing(upstream_file):
    run = Recorder()
    client = NginxClient(str(upstream_file), run=run)
    result = client.converge({"app": {"10.0.0.1:8080": {"weight": 0}}}, check_mode=True)
    assert result.changed
    assert "    server 10.0.0.1:8080 max_fails=2 fail_timeout=10s down;\n" in result.after
    assert upstream_file.read_text() == RENDERED and run.calls == []


def test_equivalent_desired_state_is_no_change(upstream_file):
    client = NginxClient(str(upstream_file), run=Recorder())
    # weight 0 in maint is what the file already says (bare `down`); drain is maint in nginx
    assert not client.converge({"app": {"10.0.0.2:8080": {"weight": 0, "state": "maint"}}}).changed
    assert not client.converge({"app": {"10.0.0.3:8080": {"state": "drain"}}}).changed


def test_failed_test_restores_the_previous_file(upstream_file):
    run = Recorder(fail=("-t",))
    client = NginxClient(str(upstream_file), run=run, test_command="/usr/sbin/nginx -t -q")
    with pytest.raises(NginxConfigError) as exc:
        client.converge({"app": {"10.0.0.1:8080": {"weight": 9}}})
    assert "invalid port in upstream" in str(exc.value) and "previous file was restored" in str(exc.value)
    assert exc.value.command == ["/usr/sbin/nginx", "-t", "-q"]
    assert upstream_file.read_text() == RENDERED
    assert [call[-1] for call in run.calls] == ["-q"], "no reload after a failed test"
    assert not list(upstream_file.parent.glob(".*.tmp"))


def test_failed_test_of_a_new_file_removes_it(tmp_path):
    path = tmp_path / "new.conf"
    client = NginxClient(str(path), run=Recorder(fail=("-t",)))
    with pytest.raises(NginxConfigError):
        client.write_upstreams(upstreams_from_spec(SPEC))
    assert not path.exists()


def test_write_upstreams(tmp_path):
    path = tmp_path / "new.conf"
    run = Recorder()
    client = NginxClient(str(path), run=run, reload_command=["systemctl", "reload", "nginx"])
    assert client.write_upstreams(upstreams_from_spec(SPEC), check_mode=True).changed and not path.exists()
    result = client.write_upstreams(upstreams_from_spec(SPEC))
    assert result.changed and path.read_text() == RENDERED and run.calls[-1] == ["systemctl", "reload", "nginx"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not client.write_upstreams(upstreams_from_spec(SPEC)).changed and len(run.calls) == 2


def test_reload_failure_is_reported(upstream_file):
    client = NginxClient(str(upstream_file), run=Recorder(fail=("reload",), output="nginx: [error] invalid PID"))
    with pytest.raises(NginxCommandError, match=r"invalid PID.*passed the configuration test and was left in place"):
        client.converge({"app": {"10.0.0.1:8080": {"weight": 9}}})


def test_missing_command_and_timeout(upstream_file):
    def missing(argv, **kwargs):
        raise FileNotFoundError(argv[0])

    def slow(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, kwargs["timeout"])

    with pytest.raises(NginxCommandError, match="'nginx' not found"):
        NginxClient(str(upstream_file), run=missing).test()
    with pytest.raises(NginxCommandError, match="did not finish within 3s"):
        NginxClient(str(upstream_file), run=slow, timeout=3).reload()


def test_unknown_server_and_conflict(upstream_file):
    client = NginxClient(str(upstream_file), run=Recorder())
    with pytest.raises(UnknownTargetError, match=r"desired\.app\.10\.9\.9\.9:1"):
        client.converge({"app": {"10.9.9.9:1": {"weight": 1}}})
    with pytest.raises(UnknownTargetError, match=r"desired\.web"):
        client.converge({"web": {"10.0.0.1:8080": {"weight": 1}}})
    with pytest.raises(UnknownTargetError):
        client.apply([Change("app", "10.9.9.9:1", ServerState(1), ServerState(2))])
    with pytest.raises(NginxConflictError, match="someone else changed it"):
        client.apply([Change("app", "10.0.0.1:8080", ServerState(2), ServerState(4))])
    assert upstream_file.read_text() == RENDERED


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(NginxError, match="does not exist: write it"):
        NginxClient(str(tmp_path / "none.conf")).current_state()


def test_client_argument_checks(tmp_path):
    with pytest.raises(TrafficSpecError, match="timeout"):
        NginxClient("x", timeout=0)
    with pytest.raises(TrafficSpecError, match="empty"):
        NginxClient("x", reload_command="")
