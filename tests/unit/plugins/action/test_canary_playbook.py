"""The ``strata.deploy.canary`` action end to end: ``ansible-playbook`` (a subprocess, bounded in time) against
REAL daemons on 127.0.0.1 - two haproxy 2.6 load balancers (``lb1`` is the ``haproxy`` fixture of
tests/unit/conftest.py, ``lb2`` a second one started the same way), the Prometheus of
tests/unit/plugins/modules/conftest.py (its exporter serves a good canary, version 3, and a bad one, version 2),
and the nginx fixture.

The inventory has ``lb1`` and ``lb2`` as hosts of their own (``ansible_connection=local``), so the action reaches
them through connections it opens itself, as it would reach remote load balancers; one test runs the play on
``lb1`` to cover the task's own connection too. Every assertion about the traffic reads the load balancer back
through its admin socket (or nginx's answers), independently of the action.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[4]
PLAYBOOK_TIMEOUT = 120.0
STABLE = ["app1", "app2", "app3"]
CANARY = ["app4"]


def _load(name: str, path: Path) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


root = _load("strata_unit_conftest", REPO / "tests/unit/conftest.py")
modules_conftest = _load("strata_modules_conftest", REPO / "tests/unit/plugins/modules/conftest.py")
prometheus = modules_conftest.prometheus  # the module-scoped real Prometheus fixture


@pytest.fixture
def haproxy2(tmp_path: Path) -> Iterator[Any]:
    """A second haproxy, configured like the ``haproxy`` fixture (same backends and servers)."""
    sink = root.TcpSink()
    folder = tmp_path / "haproxy2"
    folder.mkdir()
    socket_path, master = str(folder / "admin.sock"), str(folder / "master.sock")
    config = folder / "haproxy.cfg"
    config.write_text(
        root.HAPROXY_CONFIG.format(
            socket=socket_path,
            state=folder / "server-state",
            frontend=root.free_port(),
            sink=sink.port,
            app_servers="\n".join(f"    server {s} 127.0.0.1:{sink.port} weight 100" for s in root.HAPROXY_APP_SERVERS),
            api_servers="\n".join(f"    server {s} 127.0.0.1:{sink.port} weight 10" for s in root.HAPROXY_API_SERVERS),
        )
    )
    log = folder / "haproxy.log"
    proc = root.start_process([root.find_binary("haproxy"), "-W", "-db", "-S", master, "-f", str(config)], log, folder)
    instance = root.HAProxyInstance(
        proc, folder, master, socket_path, str(folder / "server-state"), config, log, 0, sink
    )
    try:
        root.wait_until(instance.ready, root.START_TIMEOUT, f"the second haproxy's admin socket {socket_path}")
        yield instance
    finally:
        root.stop_process_group(proc)
        sink.close()


def weights(haproxy: Any) -> dict[str, tuple[int, int]]:
    """``server -> (weight, admin state bits)`` of backend app, from ``show servers state``."""
    lines = haproxy.command("show servers state app").splitlines()
    fields = lines[1].lstrip("#").split()
    rows = [dict(zip(fields, line.split(), strict=True)) for line in lines[2:] if line.strip()]
    return {row["srv_name"]: (int(row["srv_uweight"]), int(row["srv_admin_state"])) for row in rows}


def canary_share(haproxy: Any) -> float:
    state = weights(haproxy)
    total = sum(w for w, admin in state.values() if not admin)
    return round(100.0 * sum(state[s][0] for s in CANARY) / total, 1)


class Lab:
    """Writes the inventory, config and playbook of one test and runs ansible-playbook."""

    def __init__(self, tmp_path: Path, lbs: dict[str, Any], prom: Any | None) -> None:
        self.root = tmp_path
        self.lbs = lbs
        self.prom = prom
        self.journal = tmp_path / "journal" / "app.json"
        python = sys.executable
        hosts = {name: {"ansible_connection": "local", "ansible_python_interpreter": python} for name in lbs}
        hosts["localhost"] = {"ansible_connection": "local", "ansible_python_interpreter": python}
        (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
        (tmp_path / "ansible.cfg").write_text(
            "[defaults]\nretry_files_enabled = false\ninterpreter_python = auto_silent\n"
            f"local_tmp = {tmp_path}/ansible-local\nremote_tmp = {tmp_path}/ansible-remote\n"
        )
        self.env = dict(
            os.environ,
            ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache/collections"),
            ANSIBLE_HOME=str(tmp_path / "ansible-home"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_PIPELINING="1",
            PYTHONUNBUFFERED="1",
        )

    def gate(self, version: str, **extra: Any) -> dict[str, Any]:
        assert self.prom is not None
        ratio = (
            'sum(app_requests_total{version="${version}",code=~"5.."}) / sum(app_requests_total{version="${version}"})'
        )
        return {
            **self.prom.connection(),
            "canary_version": version,
            "queries": [{"name": "error_ratio", "query": ratio, "max": 0.01}],
            "no_data": "fail",
            **extra,
        }

    def args(self, **overrides: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "provider": "haproxy",
            "load_balancers": list(self.lbs),
            "provider_options_per_lb": {
                name: {"socket": lb.socket_path, "state_file": lb.state_file, "timeout": 5}
                for name, lb in self.lbs.items()
            },
            "backend": "app",
            "stable": STABLE,
            "canary": CANARY,
            "rollout_id": "app-3",
            "steps": [25, 100],
            "pause": 0.5,
            "journal_path": str(self.journal),
        }
        args.update(overrides)
        return args

    def write_playbook(self, runs: list[dict[str, Any]], hosts: str = "localhost") -> None:
        """One play with a canary task per item of ``runs``, each result kept in ``result-<n>.json``."""
        tasks: list[dict[str, Any]] = []
        for number, args in enumerate(runs):
            result = self.root / f"result-{number}.json"
            with contextlib.suppress(FileNotFoundError):
                result.unlink()
            tasks += [
                {"name": f"Run the canary {number}", "strata.deploy.canary": args, "register": f"__canary{number}"},
                {
                    "name": f"Keep the result {number}",
                    "ansible.builtin.copy": {"content": f"{{{{ __canary{number} | to_json }}}}", "dest": str(result)},
                    "delegate_to": "localhost",
                    "check_mode": False,
                },
            ]
        play = [{"name": "Canary", "hosts": hosts, "gather_facts": False, "ignore_errors": True, "tasks": tasks}]
        (self.root / "play.yml").write_text(json.dumps(play))

    def command(self, *extra: str) -> list[str]:
        binary = str(Path(sys.executable).parent / "ansible-playbook")
        return [binary, "-i", str(self.root / "inventory.json"), str(self.root / "play.yml"), *extra]

    def run_many(self, runs: list[dict[str, Any]], *extra: str, hosts: str = "localhost") -> tuple[list[Any], str]:
        self.write_playbook(runs, hosts)
        done = subprocess.run(
            self.command(*extra),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        return [json.loads((self.root / f"result-{n}.json").read_text()) for n in range(len(runs))], output

    def run(self, args: dict[str, Any], *extra: str, hosts: str = "localhost") -> tuple[dict[str, Any], str]:
        results, output = self.run_many([args], *extra, hosts=hosts)
        return results[0], output

    def run_and_kill(self, args: dict[str, Any], marker: str) -> str:
        """Start the playbook, wait for a progress line containing ``marker``, then SIGKILL its whole process group
        (the controller dies: the main process and its workers)."""
        self.write_playbook([args])
        proc = subprocess.Popen(
            self.command(),
            env=self.env,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + PLAYBOOK_TIMEOUT
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                while marker.encode() not in seen:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        pytest.fail(f"no {marker!r} before the playbook ended or timed out:\n{seen.decode()}")
                    if selector.select(timeout=0.2):
                        seen += os.read(proc.stdout.fileno(), 65536)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stdout.close()
        return seen.decode()

    def journal_doc(self) -> dict[str, Any]:
        return json.loads(self.journal.read_text())


@pytest.fixture
def lab(tmp_path: Path, haproxy: Any, haproxy2: Any, prometheus: Any) -> Lab:
    """Both load balancers start with the canary app4 out of the traffic (weight 0), as after its deployment."""
    for lb in (haproxy, haproxy2):
        lb.command("set server app/app4 weight 0")
    return Lab(tmp_path, {"lb1": haproxy, "lb2": haproxy2}, prometheus)


def test_good_canary_reaches_100_percent_on_both_lbs(lab: Lab) -> None:
    result, output = lab.run(lab.args(gate=lab.gate("3")))

    assert not result.get("failed"), result["msg"]
    assert result["status"] == "done"
    assert result["changed"] is True
    for name in ("lb1", "lb2"):
        state = weights(lab.lbs[name])
        assert canary_share(lab.lbs[name]) == 100.0
        assert [state[s][0] for s in STABLE] == [0, 0, 0]
    assert result["observed"] == {"lb1": 100.0, "lb2": 100.0}
    assert [gate["verdict"] for gate in result["gates"]] == ["pass"] * 2
    assert result["gates"][0]["checks"][0]["detail"] == "0.008 <= max 0.01"
    actions = [event["action"] for event in result["events"]]
    assert actions == ["start", "step", "step", "done"]
    assert all(event["who"] and event["at"].endswith("Z") for event in result["events"])
    assert result["events"][1]["after"]["app"]["app4"]["weight"] > 0
    # the progress lines, in order, with the observed split of each LB and the gate's values
    lines = [line for line in output.splitlines() if line.startswith("[canary app-3]")]
    step_lines = [line for line in lines if ": canary " in line and "-> observed" in line]
    assert [line.split(": canary ")[1].split(" ")[0] for line in step_lines] == ["25%", "100%"]
    assert "step 1/2: canary 25% -> observed lb1 25.0%, lb2 25.0%; pausing 0.5s" in step_lines[0]
    assert sum("gate pass: error_ratio 0.008 <= max 0.01" in line for line in lines) == 2
    assert "done - canary lb1 100.0%, lb2 100.0%" in lines[-1]
    assert lab.journal_doc()["phase"] == "done"

    again, _output = lab.run(lab.args(gate=lab.gate("3")))
    assert again["status"] == "done"
    assert again["decision"] == "nothing"
    assert again["changed"] is False, "a done rollout is not run again"


def test_bad_canary_is_rolled_back_to_zero_by_the_gate(lab: Lab) -> None:
    result, output = lab.run(lab.args(gate=lab.gate("2"), abort_steps=[5, 0]), hosts="lb1")

    assert result.get("failed") is True
    assert result["status"] == "rolled_back"
    assert "error_ratio: 0.03 > max 0.01" in result["msg"]
    for name in ("lb1", "lb2"):
        assert canary_share(lab.lbs[name]) == 0.0
        assert weights(lab.lbs[name])["app4"] == (0, 0)
    actions = [event["action"] for event in result["events"]]
    assert actions == ["start", "step", "abort", "abort_step", "abort_step", "rolled_back"]
    assert result["events"][1]["gates"] == [{"name": "error_ratio", "passed": False, "detail": "0.03 > max 0.01"}]
    assert lab.journal_doc()["phase"] == "rolled_back"
    assert "rollback 1/2: canary 5% -> observed lb1 5.0%, lb2 5.0%" in output
    assert "rolled back: canary 0% on every load balancer" in output


def test_killed_during_a_pause_then_resumed(lab: Lab) -> None:
    lab.run_and_kill(lab.args(gate=lab.gate("3"), steps=[{"weight": 50, "pause": 60}, 100]), "canary 50% -> observed")

    assert canary_share(lab.lbs["lb1"]) == canary_share(lab.lbs["lb2"]) == 50.0
    journal = lab.journal_doc()
    assert journal["phase"] == "running"
    assert journal["step_index"] == -1, "step 1 was applied but its gate had not run: not recorded"

    result, output = lab.run(lab.args(gate=lab.gate("3"), steps=[50, 100]))
    assert result["status"] == "done", result["msg"]
    assert result["decision"] == "resume"
    assert "was interrupted in phase running after step -1: resuming" in output
    for name in ("lb1", "lb2"):
        assert canary_share(lab.lbs[name]) == 100.0
    assert [event["action"] for event in result["events"]] == ["start", "resume", "step", "step", "done"]
    assert [event["step_index"] for event in result["events"] if event["action"] == "step"] == [0, 1]


def test_killed_during_a_gradual_abort_then_the_rollback_is_finished(lab: Lab) -> None:
    args = lab.args(gate=lab.gate("2"), steps=[50, 100], abort_steps=[25, 0], abort_pause=60)
    lab.run_and_kill(args, "rollback 1/2: canary 25% -> observed")

    assert canary_share(lab.lbs["lb1"]) == canary_share(lab.lbs["lb2"]) == 25.0
    assert lab.journal_doc()["phase"] == "aborting"

    result, _output = lab.run(lab.args(gate=lab.gate("2"), steps=[50, 100], abort_steps=[25, 0]))
    assert result["status"] == "rolled_back"
    assert result["decision"] == "rollback", "an interrupted rollback is finished whatever resume_policy says"
    for name in ("lb1", "lb2"):
        assert canary_share(lab.lbs[name]) == 0.0
    assert lab.journal_doc()["phase"] == "rolled_back"


def test_check_mode_prints_the_plan_and_changes_nothing(lab: Lab) -> None:
    before = {name: weights(lb) for name, lb in lab.lbs.items()}
    result, output = lab.run(lab.args(gate=lab.gate("3")), "--check")
    assert result["status"] == "planned"
    assert not result.get("failed")
    assert [step["weight"] for step in result["plan"]] == [25.0, 100.0]
    assert output.count("would run step") == 2
    assert {name: weights(lb) for name, lb in lab.lbs.items()} == before
    assert not lab.journal.exists()


def test_pause_on_failure_then_mode_rollback(lab: Lab) -> None:
    paused, _output = lab.run(lab.args(gate=lab.gate("2"), on_failure="pause"))
    assert paused["status"] == "paused"
    assert paused.get("failed") is True
    assert canary_share(lab.lbs["lb1"]) == 25.0, "on_failure=pause keeps the traffic where the gate failed"

    rolled, _output = lab.run(lab.args(mode="rollback", rollout_id=None))
    assert rolled["status"] == "rolled_back"
    assert not rolled.get("failed")
    assert rolled["rollout_id"] == "app-3", "mode rollback takes the rollout found in the journal"
    for name in ("lb1", "lb2"):
        assert canary_share(lab.lbs[name]) == 0.0


BAD_INPUT = [
    ({"canary": ["app9"]}, "lb1 has no server app9 in backend app"),
    ({"steps": [10, 50, 25, 100]}, "steps[2]: weights must not decrease"),
    ({"steps": [10, 50]}, "the last step must be 100"),
    ({"provider_options": {"sockt": "/x"}}, "unknown option(s) sockt for provider haproxy"),
    ({"load_balancers": ["lb1", "lb9"], "provider_options_per_lb": {}}, "'lb9' is not a host of the inventory"),
    ({"rollout_id": None}, "rollout_id: required with mode rollout"),
]


def test_bad_input_fails_before_any_change(lab: Lab) -> None:
    before = {name: weights(lb) for name, lb in lab.lbs.items()}
    results, _output = lab.run_many([lab.args(**overrides) for overrides, _expected in BAD_INPUT])
    for result, (_overrides, expected) in zip(results, BAD_INPUT, strict=True):
        assert result.get("failed") is True
        assert expected in result["msg"]
    assert {name: weights(lb) for name, lb in lab.lbs.items()} == before
    assert not lab.journal.exists()


def test_gate_that_cannot_be_evaluated_changes_nothing(lab: Lab) -> None:
    before = {name: weights(lb) for name, lb in lab.lbs.items()}
    broken = {"queries": [{"name": "broken", "query": "sum(rate(x[5m]", "max": 1}]}
    unreachable = {"url": "https://127.0.0.1:9", "retries": 0, "timeout": 2}
    results, _output = lab.run_many(
        [lab.args(gate=lab.gate("3", **broken)), lab.args(gate=lab.gate("3", **unreachable))]
    )
    for result, expected in zip(results, ["Prometheus rejected", "127.0.0.1:9"], strict=True):
        assert result.get("failed") is True
        assert result["status"] == "refused"
        assert expected in result["msg"]
        assert "Nothing was changed" in result["msg"]
    assert {name: weights(lb) for name, lb in lab.lbs.items()} == before
    assert not lab.journal.exists()


def test_nginx_canary_moves_real_requests(tmp_path: Path, nginx: Any) -> None:
    lab = Lab(tmp_path, {"lb1": nginx}, None)
    addresses = {name: nginx.address(name) for name in ("a", "b", "c")}
    args = {
        "provider": "nginx",
        "load_balancers": ["lb1"],
        "provider_options": {
            "path": str(nginx.upstream_file),
            "test_command": " ".join(nginx.test_command),
            "reload_command": " ".join(nginx.reload_command),
        },
        "backend": "app",
        "stable": [addresses["a"], addresses["b"]],
        "canary": [addresses["c"]],
        "rollout_id": "app-c",
        "steps": [50, 100],
        "journal_path": str(lab.journal),
    }
    result, _output = lab.run(args)
    assert result["status"] == "done", result["msg"]
    assert result["observed"] == {"lb1": 100.0}
    root.wait_until(lambda: nginx.hits(6) == {"c": 6}, 10, "every request to reach the canary c")
