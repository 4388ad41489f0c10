"""redis_sentinel against real redis-server and redis-sentinel processes on 127.0.0.1 (the ``redis_lab`` fixture of
tests/unit/plugins/module_utils/_redis/test_redis_live.py, loaded by path).

Every assertion about Redis or Sentinel reads the state back with redis-cli (the lab's ``cli``), independently of
the module. Sentinel runs with down-after-milliseconds 1000 here, so failovers take seconds.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.strata.deploy.plugins.modules import redis_sentinel


def _load_lab() -> Any:
    name = "strata_redis_lab"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "module_utils" / "_redis" / "test_redis_live.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


lab_module = _load_lab()
redis_lab = lab_module.redis_lab
ADMIN = lab_module.ADMIN
SENTINEL = lab_module.SENTINEL
MASTER_NAME = lab_module.MASTER_NAME
wait_until = lab_module.wait_until
ROTATED = "rotated-2"
WRONG = "wrong"


def base(lab, **extra) -> dict[str, Any]:
    return {
        "name": MASTER_NAME,
        "sentinels": lab.sentinel_list(),
        "login_user": ADMIN[0],
        "login_password": ADMIN[1],
        "connect_timeout": 2,
        **extra,
    }


def monitor_args(lab, sentinel, **extra) -> dict[str, Any]:
    options = {
        "mode": "monitor",
        "sentinel": sentinel.address,
        "bootstrap_master": lab.nodes[0].address,
        "quorum": 2,
        "down_after_milliseconds": 1000,
        "failover_timeout": 10000,
        "parallel_syncs": 1,
        "auth_user": SENTINEL[0],
        "auth_pass": SENTINEL[1],
        "sentinel_user": SENTINEL[0],
        "sentinel_pass": SENTINEL[1],
        "config_file": str(sentinel.root / "sentinel.conf"),
    }
    return base(lab, **{**options, **extra})


def replica_args(lab, node, **extra) -> dict[str, Any]:
    options = {
        "mode": "replica",
        "node": node.address,
        "node_address": node.address,
        "bootstrap_master": lab.nodes[0].address,
        "wait_timeout": 20,
    }
    return base(lab, **{**options, **extra})


def converge(lab, run_module) -> list[bool]:
    """What the role does: every Sentinel monitors, then every node replicates; returns each task's changed."""
    changed = []
    for sentinel in lab.sentinels:
        run = run_module(redis_sentinel.main, monitor_args(lab, sentinel))
        assert not run.failed, run.result
        changed.append(run.result["changed"])
    for node in lab.nodes:
        run = run_module(redis_sentinel.main, replica_args(lab, node))
        assert not run.failed, run.result
        changed.append(run.result["changed"])
    return changed


# -- bootstrap, idempotence, check mode ------------------------------------------------------------------


def test_bootstrap_monitors_the_primary_and_points_replicas_then_changes_nothing(redis_lab, run_module):
    lab = redis_lab
    primary = lab.nodes[0]
    assert converge(lab, run_module) == [True, True, True, False, True, True]
    for sentinel in lab.sentinels:
        assert lab.master_of(sentinel) == primary.address
        assert lab.sentinel_field(sentinel, "down-after-milliseconds") == "1000"
        assert lab.sentinel_field(sentinel, "quorum") == "2"
        assert f"sentinel auth-user {MASTER_NAME} {SENTINEL[0]}" in (sentinel.root / "sentinel.conf").read_text()
    for node in lab.nodes[1:]:
        assert lab.role(node)[:4] == ["slave", "127.0.0.1", str(primary.port), "connected"]
        assert f"replicaof 127.0.0.1 {primary.port}" in (node.root / "redis.conf").read_text(), "CONFIG REWRITE"
    assert lab.role(primary)[0] == "master"

    assert converge(lab, run_module) == [False] * 6, "a second run changes nothing"
    lab.wait_settled(primary)


def test_check_mode_predicts_and_sends_nothing(redis_lab, run_module):
    lab = redis_lab
    sentinel, node = lab.sentinels[0], lab.nodes[1]
    run = run_module(redis_sentinel.main, monitor_args(lab, sentinel), check=True, diff=True)
    assert not run.failed and run.result["changed"], run.result
    assert run.result["commands"][0] == f"SENTINEL MONITOR {MASTER_NAME} 127.0.0.1 {lab.nodes[0].port} 2"
    assert "auth-pass ********" in run.result["commands"][1] and SENTINEL[1] not in str(run.result)
    assert run.result["diff"]["before"] == {"monitored": False}
    assert lab.master_of(sentinel) == "", "nothing was sent"

    run = run_module(redis_sentinel.main, replica_args(lab, node), check=True)
    assert run.result["changed"] and run.result["source"] == "bootstrap", run.result
    assert lab.role(node)[0] == "master", "no REPLICAOF in check mode"


def test_only_differing_options_are_set_and_secrets_stay_masked(redis_lab, run_module):
    lab = redis_lab
    converge(lab, run_module)
    sentinel = lab.sentinels[1]
    changed_args = monitor_args(lab, sentinel, down_after_milliseconds=3000, auth_pass=ROTATED)
    run = run_module(redis_sentinel.main, changed_args, diff=True)
    assert not run.failed, run.result
    assert run.result["commands"] == [f"SENTINEL SET {MASTER_NAME} down-after-milliseconds 3000 auth-pass ********"]
    assert run.result["diff"]["after"]["auth-pass"] == "******** (changed)"
    assert ROTATED not in str(run.result)
    assert lab.sentinel_field(sentinel, "down-after-milliseconds") == "3000"
    assert f"sentinel auth-pass {MASTER_NAME} {ROTATED}" in (sentinel.root / "sentinel.conf").read_text()
    again = run_module(redis_sentinel.main, changed_args)
    assert again.result["changed"] is False, again.result


def test_the_sentinels_peer_password_is_set_only_when_it_differs(redis_lab, run_module):
    lab = redis_lab
    converge(lab, run_module)
    sentinel = lab.sentinels[2]
    rotated = monitor_args(lab, sentinel, sentinel_pass=ROTATED)
    run = run_module(redis_sentinel.main, rotated)
    assert run.result["changed"] is True
    assert run.result["commands"] == ["SENTINEL CONFIG SET sentinel-pass ********"]
    assert lab.cli(sentinel.port, "SENTINEL", "CONFIG", "GET", "sentinel-pass").splitlines()[1] == ROTATED
    assert run_module(redis_sentinel.main, rotated).result["changed"] is False


def test_an_unreadable_config_file_sends_auth_again_with_a_warning(redis_lab, run_module, tmp_path):
    lab = redis_lab
    converge(lab, run_module)
    # The file is read only for a master the Sentinel already monitors: make sure it answers for it first.
    wait_until(lambda: lab.master_of(lab.sentinels[0]) != "", 10, "the Sentinel to report the master", 0.1)
    run = run_module(redis_sentinel.main, monitor_args(lab, lab.sentinels[0], config_file=str(tmp_path / "missing")))
    assert run.result["changed"] is True
    assert "auth-user/auth-pass are sent again" in str(run.result.get("warnings")), run.result


# -- the re-run after a failover: nothing is reverted ----------------------------------------------------


def test_rerun_after_a_crash_failover_does_not_revert_and_the_old_primary_rejoins(redis_lab, run_module):
    lab = redis_lab
    old = lab.nodes[0]
    converge(lab, run_module)
    lab.wait_settled(old)

    old.stop(signal.SIGKILL)
    wait_until(lambda: all(lab.master_of(s) not in ("", old.address) for s in lab.sentinels), 30, "a new master", 0.1)

    def settled() -> bool:
        masters = {lab.master_of(s) for s in lab.sentinels}
        flags = [lab.sentinel_field(s, "flags") for s in lab.sentinels]
        return len(masters) == 1 and not any("failover" in f for f in flags)

    wait_until(settled, 30, "the Sentinels to agree with no failover in progress", 0.1)
    new = lab.node_by_address(lab.master_of(lab.sentinels[0]))
    assert new is not old
    wait_until(lambda: lab.role(new)[0] == "master", 10, "the promoted node to report role master")
    # Sentinel points the other live replica at the new master on its own, a moment later (slower under load):
    # the re-run below must find the failover finished, not race it.
    for node in lab.nodes[1:]:
        if node is not new:
            wait_until(lambda n=node: lab.role(n)[:3] == ["slave", "127.0.0.1", str(new.port)], 30,
                       "the other replica to follow the new master", 0.1)

    # the role re-run on the live hosts: no change, the master stays the new one
    for sentinel in lab.sentinels:
        run = run_module(redis_sentinel.main, monitor_args(lab, sentinel))
        assert run.result["changed"] is False and run.result["master"] == new.address, run.result
    for node in lab.nodes[1:]:
        run = run_module(redis_sentinel.main, replica_args(lab, node))
        assert not run.failed and run.result["changed"] is False, run.result
        assert run.result["master"] == new.address and run.result["source"] == "sentinel"
    assert lab.role(new)[0] == "master"

    # the old primary comes back (as a master, from its own config); the module points it at the new master
    lab.start(old)
    run = run_module(redis_sentinel.main, replica_args(lab, old))
    assert not run.failed, run.result
    if run.result["changed"]:
        assert run.result["commands"] == [f"REPLICAOF 127.0.0.1 {new.port}", "CONFIG REWRITE"]
    assert run.result["role"]["master"] == new.address
    assert lab.role(old)[:3] == ["slave", "127.0.0.1", str(new.port)]
    assert all(lab.master_of(s) == new.address for s in lab.sentinels)
    assert converge(lab, run_module) == [False] * 6


def test_no_bootstrap_guess_without_a_majority_of_sentinels(redis_lab, run_module):
    lab = redis_lab
    lab.sentinels[1].stop()
    lab.sentinels[2].stop()
    run = run_module(redis_sentinel.main, replica_args(lab, lab.nodes[1]))
    assert run.failed
    assert "only 1 of 3 Sentinels answered" in run.result["msg"]
    assert "Refusing to fall back to the configured primary" in run.result["msg"]
    assert lab.role(lab.nodes[1])[0] == "master", "nothing changed"


def test_bootstrap_follows_a_configured_primary_that_is_already_a_replica(redis_lab, run_module):
    lab = redis_lab
    # Sentinels wiped but the nodes remember an earlier failover: node 2 is master, node 1 replicates from it.
    assert lab.cli(lab.nodes[0].port, "REPLICAOF", "127.0.0.1", str(lab.nodes[1].port)) == "OK"
    run = run_module(redis_sentinel.main, monitor_args(lab, lab.sentinels[0]))
    assert not run.failed, run.result
    assert run.result["master"] == lab.nodes[1].address
    assert lab.master_of(lab.sentinels[0]) == lab.nodes[1].address


# -- planned failover ----------------------------------------------------------------------------------------


def test_planned_failover_waits_for_agreement_and_is_a_no_op_on_rerun(redis_lab, run_module):
    lab = redis_lab
    old = lab.nodes[0]
    converge(lab, run_module)
    lab.wait_settled(old)
    args = base(lab, mode="failover", failover_from=f"127.0.0.1:{old.port}", wait_timeout=45)

    check = run_module(redis_sentinel.main, args, check=True)
    assert check.result["changed"] is True and "would fail" in check.result["msg"], check.result
    assert all(lab.master_of(s) == old.address for s in lab.sentinels)

    run = run_module(redis_sentinel.main, args)
    assert not run.failed, run.result
    new = run.result["master"]
    assert new != old.address and new in run.result["candidates"]
    assert [e["event"] for e in run.result["events"]] == [
        "SENTINEL FAILOVER sent",
        "first Sentinel advertises a new master",
        "every answering Sentinel advertises the new master",
        "the old master replicates from the new one",
    ]
    assert all(lab.master_of(s) == new for s in lab.sentinels)
    assert lab.role(old)[:4] == ["slave", "127.0.0.1", new.split(":")[1], "connected"]

    again = run_module(redis_sentinel.main, args)
    assert again.result["changed"] is False and "no failover needed" in again.result["msg"], again.result
    assert converge(lab, run_module) == [False] * 6, "the role after a planned failover changes nothing"


def test_failover_needs_a_from_or_force_and_all_sentinels_agreeing(redis_lab, run_module):
    lab = redis_lab
    run = run_module(redis_sentinel.main, base(lab, mode="failover"))
    assert run.failed and "failover_from" in run.result["msg"]
    converge(lab, run_module)
    lab.sentinels[2].stop()
    run = run_module(redis_sentinel.main, base(lab, mode="failover", failover_from="127.0.0.1"))
    assert run.failed and "do not agree" in run.result["msg"], run.result


def test_status_reads_only(redis_lab, run_module):
    lab = redis_lab
    converge(lab, run_module)
    run = run_module(redis_sentinel.main, base(lab, mode="status", node=lab.nodes[1].address, node_address="x:1"))
    assert not run.failed, run.result
    assert run.result["changed"] is False and run.result["agreed"] is True
    assert run.result["master"] == lab.nodes[0].address and run.result["role"]["role"] == "replica"
    assert len(run.result["sentinels"]) == 3


def test_wrong_credentials_fail_with_a_clear_message(redis_lab, run_module):
    lab = redis_lab
    run = run_module(redis_sentinel.main, monitor_args(lab, lab.sentinels[0], login_password=WRONG))
    assert run.failed
    assert "WRONGPASS" in run.result["msg"] and WRONG not in run.result["msg"].replace("WRONGPASS", "")


# -- documentation ------------------------------------------------------------------------------------------


def test_documented_options_equal_the_argument_spec():
    doc = yaml.safe_load(redis_sentinel.DOCUMENTATION)
    documented = {
        name: (o.get("type", "str"), o.get("default"), o.get("choices"), o.get("elements"))
        for name, o in doc["options"].items()
    }
    spec = {
        name: (o.get("type", "str"), o.get("default"), o.get("choices"), o.get("elements"))
        for name, o in redis_sentinel.argument_spec().items()
    }
    assert documented == spec
    assert redis_sentinel.argument_spec()["login_password"]["no_log"] is True
    assert redis_sentinel.argument_spec()["auth_pass"]["no_log"] is True
    tasks = yaml.safe_load(redis_sentinel.EXAMPLES)
    assert all("strata.deploy.redis_sentinel" in task for task in tasks)
    assert yaml.safe_load(redis_sentinel.RETURN)
