"""The ``strata.deploy.canary`` action with ``provider: alb``, end to end through ``ansible-playbook`` (a subprocess,
bounded in time), against an AWS EMULATOR: moto's server mode on 127.0.0.1 behind a throttling proxy
(tests/unit/plugins/aws_emulator.py), gated by the real Prometheus of tests/unit/plugins/modules/conftest.py (its
exporter serves a good canary, version 3, and a bad one, version 2).

The AWS API is reached from the inventory host ``aws-api`` (``ansible_connection=local``), which the action connects
to as it would to a load balancer; the journal is kept in the rule's tags. Every assertion about the traffic reads
moto directly, independently of the action.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic import compact
from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import READY, ServerState

REPO = Path(__file__).resolve().parents[4]
PLAYBOOK_TIMEOUT = 120.0


def _load(name: str, path: Path) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


emu = _load("strata_aws_emulator", REPO / "tests/unit/plugins/aws_emulator.py")
modules_conftest = _load("strata_modules_conftest", REPO / "tests/unit/plugins/modules/conftest.py")
prometheus = modules_conftest.prometheus  # the module-scoped real Prometheus fixture


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    instance = emu.start_emulator(tmp_path_factory.mktemp("moto"))
    try:
        yield instance
    finally:
        instance.close()


class AlbLab:
    def __init__(self, tmp_path: Path, emulator: Any, prom: Any) -> None:
        emulator.reset()
        self.root = tmp_path
        self.emulator = emulator
        self.prom = prom
        self.alb = emu.build_alb(emulator, "")
        python = sys.executable
        hosts = {
            name: {"ansible_connection": "local", "ansible_python_interpreter": python}
            for name in ("localhost", "aws-api")
        }
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

    def gate(self, version: str) -> dict[str, Any]:
        ratio = (
            'sum(app_requests_total{version="${version}",code=~"5.."}) / sum(app_requests_total{version="${version}"})'
        )
        return {
            **self.prom.connection(),
            "canary_version": version,
            "queries": [{"name": "error_ratio", "query": ratio, "max": 0.01}],
            "no_data": "fail",
        }

    def args(self, **overrides: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "provider": "alb",
            "load_balancers": ["aws-api"],
            "provider_options": self.emulator.options(aws_retries=4),
            "backend": self.alb.rule,
            "stable": ["blue"],
            "canary": ["green"],
            "rollout_id": "web-3",
            "steps": [25, 100],
            "pause": 0,
        }
        args.update(overrides)
        return args

    def run(self, args: dict[str, Any], *extra: str) -> tuple[dict[str, Any], str]:
        result_file = self.root / "result.json"
        tasks = [
            {"name": "Run the canary on the ALB rule", "strata.deploy.canary": args, "register": "__canary"},
            {
                "name": "Keep the result",
                "ansible.builtin.copy": {"content": "{{ __canary | to_json }}", "dest": str(result_file)},
                "check_mode": False,
            },
        ]
        play = [{"name": "Canary", "hosts": "localhost", "gather_facts": False, "ignore_errors": True, "tasks": tasks}]
        (self.root / "play.yml").write_text(json.dumps(play))
        binary = str(Path(sys.executable).parent / "ansible-playbook")
        done = subprocess.run(
            [binary, "-i", str(self.root / "inventory.json"), str(self.root / "play.yml"), *extra],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        return json.loads(result_file.read_text()), output

    def weights(self) -> dict[str, int]:
        return emu.rule_weights(self.emulator, self.alb.rule)

    def tags(self) -> dict[str, str]:
        found = self.emulator.client("elbv2").describe_tags(ResourceArns=[self.alb.rule])["TagDescriptions"]
        return {t["Key"]: t["Value"] for t in found[0]["Tags"]}

    def journal(self) -> jr.Journal | None:
        text = compact.decode_tags(self.tags())
        return None if text is None else jr.loads(text)

    def other_rules(self) -> list[dict[str, Any]]:
        return [r for r in emu.all_rules(self.emulator, self.alb.listener) if r["RuleArn"] != self.alb.rule]


@pytest.fixture
def lab(tmp_path: Path, emulator: Any, prometheus: Any) -> AlbLab:
    return AlbLab(tmp_path, emulator, prometheus)


def test_emulator_alb_canary_reaches_100_percent_with_throttling_retried(lab: AlbLab) -> None:
    others = lab.other_rules()
    lab.emulator.proxy.throttle("ModifyRule", 2)  # the first step's write is throttled twice, then goes through

    result, output = lab.run(lab.args(gate=lab.gate("3")))

    assert not result.get("failed"), result["msg"]
    assert result["status"] == "done"
    assert lab.weights() == {"blue": 0, "green": 999}
    assert result["observed"] == {"aws-api": 100.0}
    assert [gate["verdict"] for gate in result["gates"]] == ["pass", "pass"]
    assert [event["action"] for event in result["events"]] == ["start", "step", "step", "done"]
    assert lab.emulator.proxy.throttled["ModifyRule"] == 2
    assert lab.other_rules() == others  # only the one rule changed
    journal = lab.journal()
    assert journal is not None and journal.phase == "done" and journal.rollout_id == "web-3"
    assert all(len(value) <= 256 for value in lab.tags().values())
    steps = [line for line in output.splitlines() if line.startswith("[canary web-3]") and "-> observed" in line]
    assert [line.split(": canary ")[1].split(" ")[0] for line in steps] == ["25%", "100%"]

    again = lab.run(lab.args(gate=lab.gate("3")))[0]  # a re-run finds the journal in the tags: nothing to do
    assert again["status"] == "done" and again["decision"] == "nothing" and again["changed"] is False


def test_emulator_alb_bad_canary_is_rolled_back_by_the_gate(lab: AlbLab) -> None:
    result = lab.run(lab.args(gate=lab.gate("2")))[0]

    assert result.get("failed")
    assert result["status"] == "rolled_back", result["msg"]
    assert lab.weights() == {"blue": 999, "green": 0}
    assert result["gates"][0]["verdict"] == "fail"
    journal = lab.journal()
    assert journal is not None and journal.phase == "rolled_back"
    assert [e.action for e in journal.events][-3:] == ["abort", "abort_step", "rolled_back"]


def test_emulator_alb_check_mode_changes_nothing(lab: AlbLab) -> None:
    others = lab.other_rules()

    result, output = lab.run(lab.args(gate=lab.gate("3")), "--check")

    assert result["status"] == "planned", result["msg"]
    assert lab.weights() == {"blue": 999, "green": 0}
    assert lab.tags() == {}
    assert lab.other_rules() == others
    assert "would run step 1/2: canary 25% (blue=999, green=333)" in output


def test_emulator_alb_resumes_from_the_journal_in_the_tags(lab: AlbLab) -> None:
    """A controller that died after step 1 (25%): the tags say so; a re-run resumes at step 2."""
    rule = lab.alb.rule
    elb = lab.emulator.client("elbv2")
    # the state a killed run leaves: weights at 25%, the journal running after step 0 (index 0)
    forward = {
        "TargetGroups": [
            {"TargetGroupArn": lab.alb.tgs["blue"], "Weight": 999},
            {"TargetGroupArn": lab.alb.tgs["green"], "Weight": 333},
        ],
        "TargetGroupStickinessConfig": {"Enabled": False},
    }
    elb.modify_rule(RuleArn=rule, Actions=[{"Type": "forward", "ForwardConfig": forward}])
    start = {rule: {"blue": ServerState(999, READY), "green": ServerState(0, READY)}}
    step0 = {rule: {"blue": ServerState(999, READY), "green": ServerState(333, READY)}}
    journal = jr.advance(
        jr.new_journal("web-3", current=start, who="ci@dead"), step_index=0, after=step0, who="ci@dead"
    )
    tags = compact.encode_tags(jr.dumps(journal))
    elb.add_tags(ResourceArns=[rule], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    result, output = lab.run(lab.args(steps=[25, 100]))

    assert result["status"] == "done", result["msg"]
    assert result["decision"] == "resume"
    assert lab.weights() == {"blue": 0, "green": 999}
    assert "resuming" in output
    steps = [line for line in output.splitlines() if "-> observed" in line]
    assert [line.split(": canary ")[1].split(" ")[0] for line in steps] == ["100%"]  # step 1 (25%) is not redone
    final = lab.journal()
    assert final is not None and final.phase == "done"
    assert [e.who for e in final.events][:2] == ["ci@dead", "ci@dead"]
