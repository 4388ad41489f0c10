"""The decisions of module_utils/_redis/sentinel.py, without servers: who the master is, what to send."""

from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._redis.client import RedisProtocolError
from ansible_collections.strata.deploy.plugins.module_utils._redis.sentinel import (
    Address,
    HostSpec,
    NodeRole,
    SentinelStateError,
    SentinelView,
    Timeline,
    choose_master,
    healthy_replicas,
    parse_role,
    persisted_settings,
    plan_monitor,
    plan_replica,
    split_args,
)

S1, S2, S3 = Address("10.0.0.1", 26379), Address("10.0.0.2", 26379), Address("10.0.0.3", 26379)
R1, R2, R3 = Address("10.0.0.1", 6379), Address("10.0.0.2", 6379), Address("10.0.0.3", 6379)


def view(sentinel, master=None, epoch=0, flags=("master",), error=None, **settings):
    return SentinelView(sentinel, master, epoch, tuple(flags), dict(settings), error)


def test_addresses_parse_and_print():
    assert Address.parse("10.0.0.1:6379") == R1
    assert Address.parse("[fd00::1]:6379") == Address("fd00::1", 6379)
    assert str(Address("fd00::1", 6379)) == "[fd00::1]:6379"
    assert Address.parse("redis1", default_port=6379) == Address("redis1", 6379)
    for bad in ("redis1", "redis1:port", ":6379"):
        with pytest.raises(ValueError):
            Address.parse(bad)
    assert HostSpec.parse("10.0.0.1").matches(R1)
    assert HostSpec.parse("10.0.0.1:6380").matches(R1) is False
    assert HostSpec.parse("10.0.0.1:6379").matches(R1)
    assert HostSpec.parse("10.0.0.2").matches(None) is False


def test_the_highest_epoch_wins_a_disagreement():
    choice = choose_master([view(S1, R1, 1), view(S2, R2, 2), view(S3, R1, 1)], "m")
    assert choice.master == R2 and choice.source == "sentinel" and not choice.agreed
    assert "10.0.0.2:26379: 10.0.0.2:6379 (epoch 2)" in choice.note


def test_same_epoch_the_majority_wins_and_all_same_is_agreed():
    assert choose_master([view(S1, R2, 3), view(S2, R2, 3), view(S3, R3, 3)], "m").master == R2
    choice = choose_master([view(S1, R2, 3), view(S2, R2, 3), view(S3, R2, 3)], "m")
    assert choice.agreed and choice.note == ""


def test_one_sentinel_that_knows_beats_bootstrap_even_when_others_are_down():
    choice = choose_master([view(S1, R2, 4), view(S2, error="refused"), view(S3, error="refused")], "m")
    assert choice.master == R2 and choice.source == "sentinel" and not choice.agreed


def test_bootstrap_only_when_a_majority_answered_and_none_knows():
    choice = choose_master([view(S1), view(S2), view(S3, error="timeout")], "m")
    assert choice.source == "bootstrap" and choice.master is None
    with pytest.raises(SentinelStateError, match="only 1 of 3 Sentinels answered"):
        choose_master([view(S1), view(S2, error="refused"), view(S3, error="timeout")], "m")


def test_failover_in_progress_is_visible():
    choice = choose_master([view(S1, R1, 1, flags=("master", "failover_in_progress")), view(S2, R1, 1)], "m")
    assert choice.failover_in_progress


def test_role_replies():
    assert parse_role(["master", 10, [["10.0.0.2", "6379", "10"]]]) == NodeRole("master", offset=10, replicas=(R2,))
    assert parse_role(["slave", "10.0.0.1", 6379, "connected", 42]) == NodeRole("slave", R1, "connected", 42)
    assert parse_role(["sentinel", ["m"]]).role == "sentinel"
    with pytest.raises(RedisProtocolError):
        parse_role(["slave", "10.0.0.1"])


def test_replica_plan_never_touches_the_master_and_only_repoints_when_needed():
    assert plan_replica(R1, R1, NodeRole("master")).action == "none"
    odd = plan_replica(R1, R1, NodeRole("slave", R2, "connected"))
    assert odd.action == "none" and "left to Sentinel" in odd.reason
    assert plan_replica(R2, R1, NodeRole("slave", R1, "connected")).action == "none"
    assert plan_replica(R2, R1, NodeRole("slave", R3, "connected")).action == "replicaof"
    fresh = plan_replica(R2, R1, NodeRole("master"))
    assert fresh.action == "replicaof" and "is a master, but the master is 10.0.0.1:6379" in fresh.reason


DESIRED = {
    "down-after-milliseconds": 5000,
    "failover-timeout": 30000,
    "parallel-syncs": 1,
    "auth-user": "strata-sentinel",
    "auth-pass": "s3cret",
}
MONITORED = {"quorum": "2", "down-after-milliseconds": "5000", "failover-timeout": "30000", "parallel-syncs": "1"}


def test_monitor_plan_for_a_new_sentinel():
    plan = plan_monitor(view(S1), R2, 2, DESIRED, None)
    assert plan.commands("m") == [
        ["SENTINEL", "MONITOR", "m", "10.0.0.2", "6379", "2"],
        [
            "SENTINEL",
            "SET",
            "m",
            "down-after-milliseconds",
            "5000",
            "failover-timeout",
            "30000",
            "parallel-syncs",
            "1",
            "auth-user",
            "strata-sentinel",
            "auth-pass",
            "s3cret",
        ],
    ]
    assert "s3cret" not in str(plan.shown_commands("m")) and "auth-pass ********" in plan.shown_commands("m")[1]
    assert "s3cret" not in str(plan.after)


def test_monitor_plan_sends_nothing_when_equal_and_keeps_the_failed_over_address():
    current = view(S1, R3, 5, **MONITORED)
    plan = plan_monitor(current, None, 2, DESIRED, {"auth-user": "strata-sentinel", "auth-pass": "s3cret"})
    assert not plan.changed and plan.commands("m") == []
    assert plan.after["master"] == "10.0.0.3:6379", "the address Sentinel moved to is kept"


def test_monitor_plan_sets_only_what_differs():
    current = view(S1, R1, 0, **{**MONITORED, "quorum": "3"})
    plan = plan_monitor(current, None, 2, {**DESIRED, "failover-timeout": None}, {"auth-user": "x", "auth-pass": "old"})
    assert plan.settings == [("quorum", "2"), ("auth-user", "strata-sentinel"), ("auth-pass", "s3cret")]
    assert plan.before["auth-pass"] == "********" and plan.after["auth-pass"] == "******** (changed)"
    assert "failover-timeout" not in plan.after, "None leaves an option alone"


def test_monitor_plan_without_a_readable_file_sends_auth_again():
    plan = plan_monitor(view(S1, R1, 0, **MONITORED), None, 2, DESIRED, None)
    assert plan.settings == [("auth-user", "strata-sentinel"), ("auth-pass", "s3cret")]


def test_monitor_plan_needs_an_address_for_a_new_monitor():
    with pytest.raises(SentinelStateError):
        plan_monitor(view(S1), None, 2, DESIRED, None)


def test_config_lines_split_like_redis():
    assert split_args('sentinel auth-pass m "a b\\x41\\"c"') == ["sentinel", "auth-pass", "m", 'a bA"c']
    assert split_args("sentinel auth-user m 'o\\'k'") == ["sentinel", "auth-user", "m", "o'k"]
    assert split_args("  port   26379  ") == ["port", "26379"]
    text = "\n".join(
        [
            "sentinel monitor m 10.0.0.1 6379 2",
            "sentinel auth-pass m p@ss",
            "sentinel auth-user m strata-sentinel",
            "sentinel auth-pass other nope",
            "# sentinel auth-pass m commented",
        ]
    )
    assert persisted_settings(text, "m") == {"auth-pass": "p@ss", "auth-user": "strata-sentinel"}


def test_healthy_replicas_skip_down_disconnected_unlinked_and_priority_zero():
    def replica(ip, flags="slave", link="ok", priority="100"):
        return ["ip", ip, "port", "6379", "flags", flags, "master-link-status", link, "slave-priority", priority]

    reply = [
        replica("10.0.0.2"),
        replica("10.0.0.3", flags="slave,s_down"),
        replica("10.0.0.4", link="err"),
        replica("10.0.0.5", priority="0"),
        replica("10.0.0.6", flags="slave,disconnected"),
    ]
    assert healthy_replicas(reply) == [R2]


def test_timeline_uses_the_given_clock():
    ticks = iter([100.0, 101.5, 103.25])
    timeline = Timeline(lambda: next(ticks))
    timeline.mark("a", x=1)
    assert timeline.events == [{"event": "a", "elapsed": 1.5, "x": 1}]
    assert timeline.elapsed == 3.25
