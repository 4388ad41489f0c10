from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import JournalError, TrafficSpecError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import ServerState

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def weights(stable, canary):
    return {"app": {"s1": ServerState(stable), "c1": ServerState(canary)}}


@pytest.fixture
def started():
    return jr.new_journal("web-42", current=weights(256, 0), who="ci@ctl", now=at(0))


def test_new_journal(started):
    assert started.schema_version == 1
    assert started.phase == "running"
    assert started.step_index == -1
    assert started.started_at == "2025-01-02T03:04:05.000000Z"
    assert started.desired == started.last_safe == weights(256, 0)
    assert [e.action for e in started.events] == ["start"]


def test_new_journal_needs_an_id():
    with pytest.raises(TrafficSpecError, match="rollout_id"):
        jr.new_journal("", current={}, who="x")


def test_naive_now_is_utc():
    journal = jr.new_journal("r", current={}, who="x", now=datetime(2025, 1, 1, 12, 0, 0))
    assert journal.started_at == "2025-01-01T12:00:00.000000Z"


def test_advance_updates_last_safe_only_when_gates_pass(started):
    one = jr.advance(
        started,
        step_index=0,
        after=weights(230, 26),
        who="ci",
        gates=[{"name": "errors", "passed": True, "detail": "0.1%"}],
        now=at(10),
    )
    assert one.step_index == 0 and one.desired == weights(230, 26) and one.last_safe == weights(230, 26)
    assert one.updated_at.startswith("2025-01-02T03:04:15")
    assert one.events[-1].before == weights(256, 0)
    two = jr.advance(one, step_index=1, after=weights(128, 128), who="ci", gates=[jr.GateResult("errors", False)])
    assert two.desired == weights(128, 128)
    assert two.last_safe == weights(230, 26)
    assert started.step_index == -1, "functions never mutate"


def test_advance_rejects_going_backwards(started):
    one = jr.advance(started, step_index=0, after=weights(230, 26), who="ci")
    with pytest.raises(JournalError, match="step 0 is not after the last recorded step 0"):
        jr.advance(one, step_index=0, after=weights(230, 26), who="ci")


def test_phases(started):
    paused = jr.pause(started, who="ops", message="waiting for approval")
    assert paused.phase == "paused"
    with pytest.raises(JournalError, match="cannot record a step in phase 'paused'"):
        jr.advance(paused, step_index=0, after=weights(1, 1), who="ci")
    running = jr.resume(paused, who="ops")
    aborting = jr.mark_abort(running, who="ci", message="gate failed", gates=[{"name": "p99", "passed": False}])
    assert aborting.phase == "aborting"
    assert aborting.events[-1].gates == (jr.GateResult("p99", False, ""),)
    back = jr.abort_step(aborting, after=weights(250, 5), who="ci")
    assert back.desired == weights(250, 5)
    done = jr.mark_rolled_back(back, who="ci", after=weights(256, 0))
    assert done.phase == "rolled_back" and done.desired == weights(256, 0)
    with pytest.raises(JournalError, match="cannot abort in phase 'rolled_back'"):
        jr.mark_abort(done, who="ci", message="again")
    finished = jr.mark_done(started, who="ci")
    assert finished.phase == "done"
    with pytest.raises(JournalError):
        jr.abort_step(started, after={}, who="ci")
    with pytest.raises(JournalError):
        jr.mark_rolled_back(started, after={}, who="ci")


def test_round_trip(started):
    journal = jr.advance(
        started, step_index=0, after=weights(230, 26), who="ci", gates=[jr.GateResult("errors", True, "ok")]
    )
    journal = jr.mark_abort(journal, who="ops", message="manual")
    text = jr.dumps(journal)
    assert text.endswith("\n")
    assert json.loads(text)["events"][1]["after"] == {
        "app": {"s1": {"weight": 230, "state": "ready"}, "c1": {"weight": 26, "state": "ready"}}
    }
    assert jr.loads(text) == journal
    assert jr.loads(text.encode()) == journal


def corrupt(started, mutate):
    doc = jr.to_dict(started)
    mutate(doc)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("mutate", "where", "text"),
    [
        (lambda d: d.pop("phase"), "document", "missing key(s) phase"),
        (lambda d: d.update(extra=1), "document", "unknown key(s) extra"),
        (lambda d: d.update(phase="flying"), "phase", "expected one of running"),
        (lambda d: d.update(step_index=-2), "step_index", "integer of -1 or more"),
        (lambda d: d.update(step_index="1"), "step_index", "integer"),
        (lambda d: d.update(rollout_id=""), "rollout_id", "non-empty string"),
        (lambda d: d.update(started_at="yesterday"), "started_at", "ISO 8601"),
        (lambda d: d.update(events={}), "events", "expected a list"),
        (lambda d: d["desired"]["app"].update(s1={"weight": -3, "state": "ready"}), "desired.app.s1.weight", "integer"),
        (lambda d: d["last_safe"]["app"].update(s1={"weight": 3}), "last_safe.app.s1", "both 'weight' and 'state'"),
        (lambda d: d["events"][0].update(action="explode"), "events[0].action", "expected one of start"),
        (lambda d: d["events"][0].pop("who"), "events[0]", "missing key(s) who"),
        (lambda d: d["events"][0].update(gates=[{"name": "x", "passed": "yes"}]), "events[0].gates[0].passed", "true"),
        (lambda d: d["events"][0].update(gates="none"), "events[0].gates", "expected a list"),
        (lambda d: d["events"][0].update(at=5), "events[0].at", "non-empty string"),
    ],
)
def test_corrupt_journals_are_clear_errors(started, mutate, where, text):
    with pytest.raises(JournalError) as exc:
        jr.loads(corrupt(started, mutate))
    assert exc.value.where == where
    assert text in exc.value.message
    assert str(exc.value).startswith("rollout journal ")


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '"x"', b"\xff\xfe"])
def test_not_a_journal(text):
    with pytest.raises(JournalError):
        jr.loads(text)


def test_truncated_json_says_so(started):
    with pytest.raises(JournalError, match="is not valid JSON"):
        jr.loads(jr.dumps(started)[:40])


def test_newer_schema(started):
    with pytest.raises(JournalError, match=r"unsupported version 2 .*newer strata\.deploy"):
        jr.loads(corrupt(started, lambda d: d.update(schema_version=2)))


def test_resume_decision(started):
    assert jr.resume_decision(None, "resume").action == "nothing"
    one = jr.advance(started, step_index=0, after=weights(230, 26), who="ci")
    two = jr.advance(one, step_index=1, after=weights(128, 128), who="ci", gates=[jr.GateResult("g", False)])

    decision = jr.resume_decision(two, "resume")
    assert (decision.action, decision.next_step, decision.weights) == ("resume", 2, weights(128, 128))
    assert "web-42" in decision.reason

    decision = jr.resume_decision(two, "rollback")
    assert (decision.action, decision.weights) == ("rollback", weights(230, 26))

    assert jr.resume_decision(jr.pause(two, who="ops"), "resume").action == "resume"
    aborting = jr.mark_abort(two, who="ci", message="gate")
    assert jr.resume_decision(aborting, "resume").action == "rollback", "an abort in progress is always finished"
    assert jr.resume_decision(jr.mark_done(two, who="ci"), "resume").action == "nothing"
    rolled = jr.mark_rolled_back(aborting, who="ci", after=weights(256, 0))
    assert jr.resume_decision(rolled, "rollback").action == "nothing"


def test_resume_decision_bad_policy(started):
    with pytest.raises(TrafficSpecError, match="resume_policy: expected one of resume, rollback"):
        jr.resume_decision(started, "ask")
