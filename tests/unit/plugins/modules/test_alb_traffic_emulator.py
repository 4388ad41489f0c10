"""``strata.deploy.alb_traffic`` and ``traffic_info`` (provider alb) against an AWS EMULATOR: moto's server mode on
127.0.0.1 (tests/unit/plugins/aws_emulator.py), behind a proxy that injects throttling. Every assertion about the
traffic reads the rules straight from moto, independently of the module."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import READY, ServerState
from ansible_collections.strata.deploy.plugins.modules import alb_traffic, traffic_info


def _load(name: str, path: Path) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


emu = _load("strata_aws_emulator", Path(__file__).resolve().parents[1] / "aws_emulator.py")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    instance = emu.start_emulator(tmp_path_factory.mktemp("moto"))
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def alb(emulator: Any) -> Any:
    emulator.reset()
    return emu.build_alb(emulator, "")


def snapshot(emulator: Any, alb: Any) -> str:
    """Every rule of the listener and the load balancer, as moto holds them (to prove what did not change)."""
    rules = emu.all_rules(emulator, alb.listener)
    lbs = emulator.client("elbv2").describe_load_balancers()["LoadBalancers"]
    return json.dumps({"rules": rules, "lbs": lbs}, sort_keys=True, default=str)


def test_emulator_sets_only_the_one_rule_and_reads_it_back(emulator: Any, alb: Any, run_module: Any) -> None:
    other_before = [r for r in emu.all_rules(emulator, alb.listener) if r["RuleArn"] != alb.rule]
    args = emulator.options(rule_arn=alb.rule, target_groups={"blue": 899, alb.tgs["green"]: 100})

    run = run_module(alb_traffic.main, args, diff=True)

    assert not run.failed, run.result
    assert run.result["changed"] is True
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 899, "green": 100}
    assert run.result["read_back"] == {
        alb.rule: {"blue": {"weight": 899, "state": "ready"}, "green": {"weight": 100, "state": "ready"}}
    }
    assert [c["server"] for c in run.result["changes"]] == ["blue", "green"]
    before_rows = [line.split() for line in run.result["diff"]["before"].splitlines()]
    after_rows = [line.split() for line in run.result["diff"]["after"].splitlines()]
    assert [alb.rule, alb.rule, "green", "0", "ready"] in before_rows
    assert [alb.rule, alb.rule, "green", "100", "ready"] in after_rows
    other_after = [r for r in emu.all_rules(emulator, alb.listener) if r["RuleArn"] != alb.rule]
    assert other_after == other_before  # the other rule and the default rule are untouched
    assert emulator.proxy.calls["ModifyRule"] == 1
    assert not {"ModifyListener", "ModifyLoadBalancerAttributes", "SetRulePriorities"} & set(emulator.proxy.calls)


def test_emulator_unchanged_split_is_changed_false(emulator: Any, alb: Any, run_module: Any) -> None:
    args = emulator.options(rule_arn=alb.rule, target_groups={"blue": 999, "green": 0}, stickiness={"enabled": False})

    run = run_module(alb_traffic.main, args)

    assert not run.failed, run.result
    assert run.result["changed"] is False
    assert run.result["changes"] == []
    assert emulator.proxy.calls["ModifyRule"] == 0


def test_emulator_check_mode_predicts_and_changes_nothing(emulator: Any, alb: Any, run_module: Any) -> None:
    before = snapshot(emulator, alb)
    args = emulator.options(
        rule_arn=alb.rule, target_groups={"blue": 500, "green": 499}, stickiness={"enabled": True, "duration": 60}
    )

    run = run_module(alb_traffic.main, args, check=True, diff=True)

    assert not run.failed, run.result
    assert run.result["changed"] is True
    assert run.result["stickiness"] == {
        "before": {"enabled": False, "duration": None},
        "after": {"enabled": True, "duration": 60},
    }
    # Compare whole rows: the random ARNs may contain "499" too.
    before_rows = [line.split() for line in run.result["diff"]["before"].splitlines()]
    after_rows = [line.split() for line in run.result["diff"]["after"].splitlines()]
    assert [alb.rule, alb.rule, "green", "0", "ready"] in before_rows
    assert [alb.rule, alb.rule, "green", "499", "ready"] in after_rows
    assert snapshot(emulator, alb) == before
    assert emulator.proxy.calls["ModifyRule"] == 0


def test_emulator_stickiness_is_set_and_compared(emulator: Any, alb: Any, run_module: Any) -> None:
    args = emulator.options(rule_arn=alb.rule, stickiness={"enabled": True, "duration": 600})
    first = run_module(alb_traffic.main, args)
    second = run_module(alb_traffic.main, args)

    assert first.result["changed"] is True and second.result["changed"] is False
    rule = emulator.client("elbv2").describe_rules(RuleArns=[alb.rule])["Rules"][0]
    assert rule["Actions"][0]["ForwardConfig"]["TargetGroupStickinessConfig"] == {
        "Enabled": True,
        "DurationSeconds": 600,
    }
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 999, "green": 0}


def test_emulator_throttling_injected_by_the_proxy_is_retried(emulator: Any, alb: Any, run_module: Any) -> None:
    emulator.proxy.throttle("ModifyRule", 2)
    emulator.proxy.throttle("DescribeRules", 1)
    args = emulator.options(rule_arn=alb.rule, target_groups={"blue": 749, "green": 250})

    run = run_module(alb_traffic.main, args)

    assert not run.failed, run.result
    assert run.result["retries"] == 3
    assert emulator.proxy.throttled == {"ModifyRule": 2, "DescribeRules": 1}
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 749, "green": 250}


def test_emulator_persistent_throttling_fails_and_leaves_the_weights(emulator: Any, alb: Any, run_module: Any) -> None:
    emulator.proxy.throttle("ModifyRule", -1)
    args = emulator.options(rule_arn=alb.rule, target_groups={"blue": 0, "green": 999}, aws_retries=2)

    run = run_module(alb_traffic.main, args)

    assert run.failed
    assert "Throttling" in run.result["msg"] and "after every retry" in run.result["msg"]
    assert "the rule was not modified" in run.result["msg"]
    assert emulator.proxy.throttled["ModifyRule"] == 3  # 1 try + 2 retries, then it gives up
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 999, "green": 0}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"target_groups": {"blue": 1000, "green": 0}},
            "target_groups.blue: expected an integer weight between 0 and 999",
        ),
        ({"target_groups": {"blue": -1}}, "target_groups.blue: expected an integer weight between 0 and 999"),
        (
            {"target_groups": {"other": 5}},
            "target group other is not in the rule's forward action (it has: blue, green)",
        ),
        ({"target_groups": {"blue": 0, "green": 0}}, "every weight of the rule would be 0"),
        (
            {"stickiness": {"enabled": True, "duration": 0}},
            "stickiness.duration: expected seconds between 1 and 604800",
        ),
    ],
)
def test_emulator_bad_input_fails_before_any_change(
    emulator: Any, alb: Any, run_module: Any, change: dict[str, Any], expected: str
) -> None:
    before = snapshot(emulator, alb)

    run = run_module(alb_traffic.main, emulator.options(rule_arn=alb.rule, **change))

    assert run.failed
    assert expected in run.result["msg"], run.result["msg"]
    assert "nothing was changed" in run.result["msg"]
    assert snapshot(emulator, alb) == before
    assert emulator.proxy.calls["ModifyRule"] == 0


def test_emulator_rule_not_found_is_a_clear_error(emulator: Any, alb: Any, run_module: Any) -> None:
    missing = alb.rule[:-4] + "0000"

    run = run_module(alb_traffic.main, emulator.options(rule_arn=missing, target_groups={"blue": 1}))

    assert run.failed
    assert "RuleNotFound" in run.result["msg"] and missing in run.result["msg"]
    assert run.result["error_type"] == "AlbNotFoundError"
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 999, "green": 0}


def test_emulator_missing_credentials_is_a_clear_error(
    emulator: Any, alb: Any, run_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    args = {"rule_arn": alb.rule, "target_groups": {"blue": 1}, "region": emu.REGION, "endpoint_url": emulator.url}

    run = run_module(alb_traffic.main, args)

    assert run.failed
    assert "Unable to locate credentials" in run.result["msg"]
    assert "set access_key and secret_key" in run.result["msg"]
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 999, "green": 0}


def test_emulator_secret_key_is_not_in_the_result(emulator: Any, alb: Any, run_module: Any) -> None:
    run = run_module(alb_traffic.main, emulator.options(rule_arn=alb.rule, target_groups={"green": 1}), diff=True)

    assert emu.SECRET_KEY not in json.dumps(run.result)


def _journal(steps: int) -> str:
    journal = jr.new_journal("web-2", current={"r": {"blue": ServerState(999, READY)}}, who="ci@ctl")
    for index in range(steps):
        journal = jr.advance(
            journal,
            step_index=index,
            after={"r": {"blue": ServerState(999 - index, READY)}},
            who="ci@ctl",
            gates=(jr.GateResult("error_ratio", True, "0.008 <= max 0.01"),),
            message=f"canary step {index}",
        )
    return jr.dumps(journal)


def test_emulator_journal_round_trips_through_rule_tags(emulator: Any, alb: Any, run_module: Any) -> None:
    elb = emulator.client("elbv2")
    elb.add_tags(ResourceArns=[alb.rule], Tags=[{"Key": "team", "Value": "web"}])
    long_text, short_text = _journal(40), _journal(1)

    first = run_module(alb_traffic.main, emulator.options(rule_arn=alb.rule, journal=long_text))
    second = run_module(alb_traffic.main, emulator.options(rule_arn=alb.rule, journal=short_text))
    info = run_module(
        traffic_info.main, emulator.options(provider="alb", backends=[alb.rule], canary={alb.rule: ["green"]})
    )

    assert not first.failed and not second.failed, (first.result, second.result)
    assert first.result["journal_tags"] > second.result["journal_tags"]
    tags = {t["Key"]: t["Value"] for t in elb.describe_tags(ResourceArns=[alb.rule])["TagDescriptions"][0]["Tags"]}
    assert tags["team"] == "web"  # the rule's own tags are left alone
    assert len(tags) == second.result["journal_tags"] + 1  # the longer journal's extra chunks were removed
    assert all(len(value) <= 256 for value in tags.values())
    assert not info.failed, info.result
    kept, wrote = jr.loads(info.result["journals"][alb.rule]), jr.loads(short_text)
    # the compact encoding keeps every field the resume decision reads, and the events without before/after
    for name in ("rollout_id", "phase", "step_index", "desired", "last_safe", "started_at", "updated_at"):
        assert getattr(kept, name) == getattr(wrote, name)
    assert [(e.action, e.step_index, e.gates, e.message) for e in kept.events] == [
        (e.action, e.step_index, e.gates, e.message) for e in wrote.events
    ]
    assert info.result["servers"] == {
        alb.rule: {"blue": {"weight": 999, "state": "ready"}, "green": {"weight": 0, "state": "ready"}}
    }
    assert info.result["observed_split"][alb.rule]["percent"] == 0.0
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 999, "green": 0}


def instance(emulator: Any) -> str:
    return emulator.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]


def health(emulator: Any, arn: str) -> dict[str, str]:
    found = emulator.client("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found}


def test_emulator_targets_registered_then_deregistered_idempotently(emulator: Any, alb: Any, run_module: Any) -> None:
    new, old = instance(emulator), instance(emulator)
    emulator.client("elbv2").register_targets(TargetGroupArn=alb.tgs["blue"], Targets=[{"Id": old, "Port": 80}])
    args = emulator.options(
        rule_arn=alb.rule,
        target_groups={"blue": 0, "green": 999},
        register={"green": [f"{new}:80"]},
        deregister={"blue": [old]},
        drain_timeout=5,
    )

    check = run_module(alb_traffic.main, args, check=True)
    assert health(emulator, alb.tgs["green"]) == {} and health(emulator, alb.tgs["blue"]) == {old: "healthy"}
    first = run_module(alb_traffic.main, args)
    second = run_module(alb_traffic.main, args)

    assert check.result["targets"][alb.tgs["green"]]["registered"] == [f"{new}:80"]
    assert not first.failed, first.result
    assert first.result["targets"] == {
        alb.tgs["green"]: {"registered": [f"{new}:80"], "deregistered": []},
        alb.tgs["blue"]: {"registered": [], "deregistered": [old]},
    }
    assert health(emulator, alb.tgs["green"]) == {new: "healthy"}
    assert health(emulator, alb.tgs["blue"]) == {}
    assert emu.rule_weights(emulator, alb.rule) == {"blue": 0, "green": 999}
    assert second.result["changed"] is False, second.result


def test_emulator_drain_wait_is_bounded_by_drain_timeout(emulator: Any, alb: Any, run_module: Any) -> None:
    old = instance(emulator)
    emulator.client("elbv2").register_targets(TargetGroupArn=alb.tgs["blue"], Targets=[{"Id": old, "Port": 80}])
    # the first DescribeTargetHealth (the plan) is moto's; every later one says the target is still draining
    emulator.proxy.answer("DescribeTargetHealth", emu.draining_answer(old, 80), skip=1)
    args = emulator.options(rule_arn=alb.rule, deregister={"blue": [old]}, drain_timeout=1.5)

    started = time.monotonic()
    run = run_module(alb_traffic.main, args)
    elapsed = time.monotonic() - started

    assert run.failed
    assert f"targets still draining after 1.5s: {alb.tgs['blue']}: {old}:80" in run.result["msg"]
    assert run.result["draining"] == {alb.tgs["blue"]: [f"{old}:80"]}
    assert elapsed < 15  # bounded: not the 300 s deregistration delay
    assert emulator.proxy.calls["DeregisterTargets"] == 1
