"""The rollout state machine (``_traffic.rollout``) against a fake ``Port``: two load balancers held in memory,
a scripted gate, a clock, and a way to "kill the controller" at any effect (an exception the machine cannot
catch), after which a new ``Rollout`` runs from the journal the fake load balancers hold.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic import rollout as ro
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficSpecError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import ServerState

STABLE = ["app1", "app2", "app3"]
CANARY = ["app4"]
LBS = ("lb1", "lb2")


class Killed(BaseException):
    """The controller died: the machine must not catch this."""


def start_state(canary_weight=0, canary_state="ready"):
    servers = {name: ServerState(100, "ready") for name in STABLE}
    servers["app4"] = ServerState(canary_weight, canary_state)
    return {"app": servers}


class FakePort(ro.Port):
    """Two load balancers in memory, a scripted gate, a fake clock; ``kill`` makes an effect raise ``Killed``."""

    def __init__(self, gate=None, states=None):
        self.lbs = {lb: copy.deepcopy(states or start_state()) for lb in LBS}
        self.gate_script = list(gate or [])
        self.gate_calls = []
        self.applied = []  # (canary weight of app4, total weight) per apply, as applied on lb1
        self.saved = []
        self.waits = []
        self.lines = []
        self.clock = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
        self.kill = None  # callable(effect, argument) -> bool
        self.fail_apply = None  # callable(lb, target) -> str | None (an error message)

    def _maybe_kill(self, effect, argument=None):
        if self.kill and self.kill(effect, argument):
            self.kill = None
            raise Killed(effect)

    def read(self):
        self._maybe_kill("read")
        return copy.deepcopy(self.lbs)

    def apply(self, target):
        self._maybe_kill("apply", target)
        changed = False
        for lb in LBS:
            error = self.fail_apply(lb, target) if self.fail_apply else None
            if error:
                raise ro.ApplyError(lb, error)
            for backend, servers in target.items():
                for server, value in servers.items():
                    if self.lbs[lb][backend][server] != value:
                        changed = True
                        self.lbs[lb][backend][server] = value
        self.applied.append(target["app"]["app4"].weight)
        return ro.Applied(copy.deepcopy(self.lbs), changed)

    def gate(self, step):
        self._maybe_kill("gate", step)
        self.gate_calls.append(None if step is None else step.index)
        if step is None:
            return ro.GateOutcome(ro.INCONCLUSIVE, "no data yet")
        verdict = self.gate_script.pop(0) if self.gate_script else ro.PASSED
        if verdict == ro.ERROR:
            raise ro.GateError("Prometheus at https://prom:9090 is unreachable")
        passed = verdict == ro.PASSED
        value = "0.008" if passed else "0.03"
        result = jr.GateResult("error_ratio", passed, f"{value} {'<=' if passed else '>'} max 0.01")
        return ro.GateOutcome(verdict, "" if passed else "error_ratio: 0.03 > max 0.01", (result,))

    def save(self, journal):
        self._maybe_kill("save", journal)
        self.saved.append(jr.loads(jr.dumps(journal)))  # what a load balancer would hold

    def wait(self, seconds):
        self.waits.append(seconds)
        self.clock += timedelta(seconds=seconds)
        self._maybe_kill("wait", seconds)

    def progress(self, line):
        self.lines.append(line)

    def now(self):
        self.clock += timedelta(milliseconds=10)
        return self.clock

    @property
    def journal(self):
        return self.saved[-1] if self.saved else None

    def percent(self, lb="lb1"):
        return ro.canary_percent(self.lbs[lb], SPEC())


def SPEC(**overrides):
    params = {
        "rollout_id": "app-1.1.0",
        "provider": "haproxy",
        "backend": "app",
        "stable": STABLE,
        "canary": CANARY,
        "steps": [10, 25, 50, 100],
        "pause": 1,
        "gated": True,
    }
    params.update(overrides)
    return ro.build_spec(**params)


def run(port, found=None, check_mode=False, **overrides):
    return ro.Rollout(SPEC(**overrides), port, "tester@ctl", check_mode=check_mode).run(found)


def actions(journal):
    return [event.action for event in journal.events]


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "param", "text"),
    [
        ({"steps": [10, 50, 25, 100]}, "steps[2]", "must not decrease"),
        ({"steps": [10, 50]}, "steps", "last step must be 100"),
        ({"steps": []}, "steps", "at least one step"),
        ({"steps": [10, 120]}, "steps[1]", "between 0 and 100"),
        ({"on_failure": "ignore"}, "on_failure", "rollback, freeze, pause"),
        ({"resume_policy": "maybe"}, "resume_policy", "resume, rollback"),
        ({"mode": "promote"}, "mode", "rollout, rollback"),
        ({"abort_steps": [10, 20, 0]}, "abort_steps[1]", "strictly decrease"),
        ({"abort_steps": [50, 10]}, "abort_steps", "last abort step must be 0"),
        ({"canary": ["app3"]}, "canary", "both the stable and the canary"),
        ({"canary": []}, "canary", "non-empty list"),
        ({"stable": ["app1", "app1"]}, "stable[1]", "listed twice"),
        ({"backend": ""}, "backend", "name of the backend"),
        ({"rollout_id": " "}, "rollout_id", "non-empty"),
        ({"provider": "f5"}, "provider", "alb, haproxy, kubernetes, nginx"),
        ({"gated": False, "steps": [10, {"weight": 100, "gate": True}]}, "steps[1].gate", "no gate is set"),
        ({"pause": "soon"}, "default_pause", "duration"),
        ({"gate_retries": -1}, "gate_retries", "0 or more"),
        ({"gate_retry_delay": "x"}, "gate_retry_delay", "duration"),
    ],
)
def test_bad_input_names_the_parameter(overrides, param, text):
    with pytest.raises(TrafficSpecError, match=text) as raised:
        SPEC(**overrides)
    assert raised.value.param == param


def test_non_monotonic_steps_only_when_allowed():
    spec = SPEC(steps=[10, 50, 25], allow_non_monotonic=True)
    assert [step.weight for step in spec.steps] == [10, 50, 25]


def test_step_dicts_override_pause_and_gate():
    spec = SPEC(steps=[{"weight": 10, "pause": "2m"}, {"weight": 100, "gate": False}], pause="30s")
    assert [(s.weight, s.pause, s.gate) for s in spec.steps] == [(10, 120, True), (100, 30, False)]


def test_target_weights_use_the_provider_scale():
    haproxy = SPEC().target(10)["app"]
    assert sum(haproxy[s].weight for s in CANARY) / sum(v.weight for v in haproxy.values()) == pytest.approx(
        0.1, abs=0.001
    )
    assert max(v.weight for v in haproxy.values()) <= 256
    nginx = SPEC(provider="nginx").target(0)["app"]
    assert nginx["app4"] == ServerState(0, "ready")
    assert {nginx[s].weight for s in STABLE} == {100}


def test_provider_options_are_checked_and_split_per_module():
    haproxy = ro.get_provider("haproxy")
    options = haproxy.check_options({"socket": "/s", "state_file": "/f"}, "provider_options")
    target = SPEC().target(10)
    args = haproxy.set_args("app", target, options)
    assert args["socket"] == "/s"
    assert args["state_file"] == "/f"
    assert args["servers"]["app"]["app4"] == {"weight": target["app"]["app4"].weight, "state": "ready"}
    assert haproxy.info_args("app", options) == {"provider": "haproxy", "backends": ["app"], "socket": "/s"}
    with pytest.raises(TrafficSpecError, match=r"unknown option.*sockett") as raised:
        haproxy.check_options({"sockett": "/s"}, "provider_options.lb2")
    assert raised.value.param == "provider_options.lb2"
    nginx = ro.get_provider("nginx")
    nginx_args = nginx.set_args("app", SPEC(provider="nginx").target(0), {"path": "/u.conf", "reload_command": "r"})
    assert nginx_args["upstream"] == "app"
    assert nginx_args["path"] == "/u.conf"
    assert nginx.info_args("app", {"path": "/u.conf", "reload_command": "r"}) == {
        "provider": "nginx",
        "upstream": "app",
        "backends": ["app"],
        "path": "/u.conf",
    }


def test_state_from_a_module_result():
    haproxy = ro.get_provider("haproxy")
    result = {"read_back": {"app": {"app1": {"weight": 3, "state": "drain"}}}}
    assert haproxy.state_from(result, "read_back", "app", "lb1") == {"app": {"app1": ServerState(3, "drain")}}
    with pytest.raises(ro.RolloutError, match="no state for 'app'"):
        haproxy.state_from({"read_back": {}}, "read_back", "app", "lb1")
    with pytest.raises(ro.RolloutError, match="unexpected state"):
        haproxy.state_from({"read_back": {"app": {"app1": {"weight": -1, "state": "ready"}}}}, "read_back", "app", "x")


def test_canary_percent_counts_only_servers_taking_new_connections():
    spec = SPEC()
    state = start_state(100)
    assert ro.canary_percent(state, spec) == 25.0
    state["app"]["app1"] = ServerState(100, "maint")
    assert ro.canary_percent(state, spec) == pytest.approx(100 / 3)
    assert ro.canary_percent({"app": {"app4": ServerState(0, "ready")}}, spec) is None


# -- a rollout that goes well ----------------------------------------------------------------------


def test_good_canary_reaches_100_with_a_progress_line_per_step():
    port = FakePort()
    outcome = run(port)

    assert outcome.status == ro.DONE
    assert outcome.ok
    assert outcome.changed
    assert outcome.decision == "start"
    assert port.percent("lb1") == port.percent("lb2") == 100.0
    assert port.gate_calls == [None, 0, 1, 2, 3], "one check before any change, then one per step"
    assert port.waits == [1, 1, 1, 1]
    journal = port.journal
    assert journal.phase == jr.DONE
    assert actions(journal) == ["start", "step", "step", "step", "step", "done"]
    assert journal.last_safe == journal.desired == SPEC().target(100)
    steps = [event for event in journal.events if event.action == "step"]
    assert [event.gates[0].name for event in steps] == ["error_ratio"] * 4
    assert all(event.who == "tester@ctl" for event in journal.events)
    assert steps[1].before == SPEC().target(10)
    assert steps[1].after == SPEC().target(25)
    step_lines = [line for line in port.lines if "step 2/4" in line]
    assert step_lines[0].startswith("[canary app-1.1.0] step 2/4: canary 25% -> observed lb1 25.0%, lb2 25.0%")
    assert "gate pass: error_ratio 0.008 <= max 0.01" in step_lines[1]
    assert outcome.observed == {"lb1": 100.0, "lb2": 100.0}
    assert [gate["verdict"] for gate in outcome.gates] == ["pass"] * 4


def test_steps_without_gate_and_without_pause():
    port = FakePort()
    outcome = run(port, gated=False, pause=0, steps=[50, 100])
    assert outcome.status == ro.DONE
    assert port.gate_calls == []
    assert port.waits == []
    assert [event.gates for event in port.journal.events if event.action == "step"] == [(), ()]


def test_a_rerun_of_a_done_rollout_changes_nothing():
    port = FakePort()
    run(port)
    saved, applied = len(port.saved), len(port.applied)
    outcome = run(port, found=port.journal)
    assert outcome.status == ro.DONE
    assert outcome.ok
    assert not outcome.changed
    assert outcome.decision == "nothing"
    assert (len(port.saved), len(port.applied)) == (saved, applied)


# -- a gate fails ----------------------------------------------------------------------------------


def test_failed_gate_rolls_back_to_zero():
    port = FakePort(gate=[ro.PASSED, ro.FAILED])
    outcome = run(port)

    assert outcome.status == ro.ROLLED_BACK
    assert not outcome.ok
    assert "step 2 (25%) did not pass" in outcome.message
    assert port.percent("lb1") == port.percent("lb2") == 0.0
    assert port.applied == [
        SPEC().target(10)["app"]["app4"].weight,
        SPEC().target(25)["app"]["app4"].weight,
        0,
    ]
    journal = port.journal
    assert journal.phase == jr.ROLLED_BACK
    assert actions(journal) == ["start", "step", "step", "abort", "abort_step", "rolled_back"]
    failed_step = journal.events[2]
    assert failed_step.gates[0].passed is False
    assert journal.events[3].gates[0].detail == "0.03 > max 0.01"
    assert journal.last_safe == SPEC().target(10)
    assert journal.desired == SPEC().target(0)
    # the failed step and the abort were written in ONE save: no journal shows the one without the other
    assert not any(j.phase == jr.RUNNING and j.step_index == 1 for j in port.saved)


def test_gradual_abort_walks_the_abort_steps_with_pauses():
    port = FakePort(gate=[ro.PASSED, ro.PASSED, ro.FAILED])
    outcome = run(port, abort_steps=[25, 10, 0], abort_pause="2s")

    assert outcome.status == ro.ROLLED_BACK
    assert port.applied[-3:] == [
        SPEC().target(25)["app"]["app4"].weight,
        SPEC().target(10)["app"]["app4"].weight,
        0,
    ]
    assert port.waits[-2:] == [2, 2], "a pause between abort steps, none after the last"
    assert actions(port.journal)[-5:] == ["abort", "abort_step", "abort_step", "abort_step", "rolled_back"]
    assert any("rollback 2/3: canary 10% -> observed lb1 10.0%" in line for line in port.lines)


def test_freeze_returns_to_the_last_safe_step_and_a_rerun_retries_the_failed_step():
    port = FakePort(gate=[ro.PASSED, ro.FAILED])
    outcome = run(port, on_failure="freeze")

    assert outcome.status == ro.FROZEN
    assert not outcome.ok
    assert port.percent() == pytest.approx(10.0, abs=0.1)
    journal = port.journal
    assert journal.phase == jr.PAUSED
    assert journal.step_index == 0
    assert journal.desired == journal.last_safe == SPEC().target(10)
    assert "0.03 > max 0.01" in journal.events[-1].message

    again = run(port, found=journal, on_failure="freeze")
    assert again.status == ro.DONE
    assert again.decision == "resume"
    assert port.gate_calls[-3:] == [1, 2, 3], "the failed step's gate is evaluated again, then the rest"
    assert actions(port.journal)[-5:] == ["resume", "step", "step", "step", "done"]


def test_pause_keeps_the_traffic_and_a_rerun_gates_that_step_again():
    port = FakePort(gate=[ro.PASSED, ro.FAILED, ro.FAILED])
    outcome = run(port, on_failure="pause")

    assert outcome.status == ro.PAUSED
    assert port.percent() == pytest.approx(25.0, abs=0.1)
    assert port.journal.phase == jr.PAUSED
    assert port.journal.desired == SPEC().target(10), "the journal holds the last step that passed"

    applied = len(port.applied)
    still_bad = run(port, found=port.journal, on_failure="pause")
    assert still_bad.status == ro.PAUSED
    assert port.applied[applied:] == [SPEC().target(25)["app"]["app4"].weight], "re-applied: compare-and-set no-op"
    assert port.percent() == pytest.approx(25.0, abs=0.1)

    rolled = run(port, found=port.journal, on_failure="pause", resume_policy="rollback")
    assert rolled.status == ro.ROLLED_BACK
    assert rolled.decision == "rollback"
    assert port.percent() == 0.0


def test_inconclusive_gate_is_asked_again_up_to_gate_retries():
    port = FakePort(gate=[ro.INCONCLUSIVE, ro.INCONCLUSIVE, ro.PASSED])
    outcome = run(port, gate_retries=2, gate_retry_delay="5s")
    assert outcome.status == ro.DONE
    assert port.gate_calls[:4] == [None, 0, 0, 0]
    assert port.waits[:3] == [1, 5, 5]

    port = FakePort(gate=[ro.INCONCLUSIVE, ro.INCONCLUSIVE])
    outcome = run(port, gate_retries=1, gate_retry_delay=0)
    assert outcome.status == ro.ROLLED_BACK, "still inconclusive after the retries: not a pass"


def test_gate_that_cannot_be_evaluated_before_any_change_refuses_to_start():
    port = FakePort()

    def unreachable(step):
        raise ro.GateError("Prometheus rejected the query 'sum(rate(x[5m]' (HTTP 400 bad_data): parse error")

    port.gate = unreachable
    outcome = run(port)
    assert outcome.status == ro.REFUSED
    assert not outcome.ok
    assert not outcome.changed
    assert "parse error" in outcome.message
    assert "Nothing was changed" in outcome.message
    assert port.applied == []
    assert port.saved == []


def test_gate_error_mid_rollout_counts_as_a_failed_gate():
    port = FakePort(gate=[ro.PASSED, ro.ERROR])
    outcome = run(port)
    assert outcome.status == ro.ROLLED_BACK
    assert "unreachable" in outcome.message
    assert outcome.gates[-1]["verdict"] == ro.ERROR
    assert port.journal.events[3].gates[0].detail == "Prometheus at https://prom:9090 is unreachable"


# -- bad input and broken load balancers --------------------------------------------------------------


def test_unknown_server_or_backend_on_any_lb_stops_before_any_change():
    port = FakePort()
    del port.lbs["lb2"]["app"]["app4"]
    with pytest.raises(UnknownTargetError, match="lb2 has no server app4") as raised:
        run(port)
    assert raised.value.param == "canary"
    port = FakePort()
    with pytest.raises(UnknownTargetError, match="no backend 'web'"):
        run(port, backend="web")
    assert port.applied == []
    assert port.saved == []


def test_a_server_outside_both_sets_that_takes_traffic_is_refused():
    port = FakePort()
    with pytest.raises(TrafficSpecError, match="app3 of backend app take traffic"):
        run(port, stable=["app1", "app2"])
    port.lbs["lb1"]["app"]["app3"] = ServerState(100, "maint")
    port.lbs["lb2"]["app"]["app3"] = ServerState(0, "ready")
    assert run(port, stable=["app1", "app2"]).status == ro.DONE


def test_a_step_refused_by_one_lb_returns_every_lb_to_the_last_safe_state():
    port = FakePort()
    weight_25 = SPEC().target(25)["app"]["app4"].weight
    port.fail_apply = lambda lb, target: (
        "set server app/app4 weight: permission denied"
        if lb == "lb2" and target["app"]["app4"].weight == weight_25
        else None
    )
    real_apply = FakePort.apply

    def half_apply(target):  # lb1 takes the change, then lb2 refuses it
        if target["app"]["app4"].weight == weight_25:
            port.lbs["lb1"]["app"].update(copy.deepcopy(target["app"]))
        return real_apply(port, target)

    port.apply = half_apply
    outcome = run(port)

    assert outcome.status == ro.INTERRUPTED
    assert "lb2: set server app/app4 weight: permission denied" in outcome.message
    assert "back at the last safe state" in outcome.message
    assert port.percent("lb1") == port.percent("lb2") == pytest.approx(10.0, abs=0.1)
    assert port.journal.phase == jr.PAUSED
    assert port.journal.step_index == 0

    port.fail_apply = None
    port.apply = lambda target: real_apply(port, target)
    again = run(port, found=port.journal)
    assert again.status == ro.DONE
    assert port.percent("lb2") == 100.0


def test_a_rollback_that_cannot_finish_stays_aborting_and_the_next_run_finishes_it():
    port = FakePort(gate=[ro.FAILED])
    port.fail_apply = lambda lb, target: "socket gone" if target["app"]["app4"].weight == 0 else None
    outcome = run(port)
    assert outcome.status == ro.INTERRUPTED
    assert "phase aborting" in outcome.message
    assert port.journal.phase == jr.ABORTING

    port.fail_apply = None
    again = run(port, found=port.journal, resume_policy="resume")
    assert again.status == ro.ROLLED_BACK, "an interrupted abort is finished whatever resume_policy says"
    assert port.percent() == 0.0


def test_another_rollout_in_flight_is_not_touched():
    port = FakePort(gate=[ro.PASSED, ro.FAILED])
    run(port, on_failure="pause")
    applied = len(port.applied)
    outcome = run(port, found=port.journal, rollout_id="app-1.2.0")
    assert outcome.status == ro.REFUSED
    assert "rollout 'app-1.1.0' is in flight" in outcome.message
    assert len(port.applied) == applied


def test_a_finished_rollout_is_replaced_by_a_new_one():
    port = FakePort()
    run(port)
    port.lbs = {lb: start_state() for lb in LBS}
    outcome = run(port, found=port.journal, rollout_id="app-1.2.0")
    assert outcome.status == ro.DONE
    assert port.journal.rollout_id == "app-1.2.0"
    assert actions(port.journal)[0] == "start"


def test_a_rolled_back_rollout_is_not_tried_again_under_the_same_id():
    port = FakePort(gate=[ro.FAILED])
    run(port)
    applied = len(port.applied)
    outcome = run(port, found=port.journal)
    assert outcome.status == ro.REFUSED
    assert "use a new rollout_id" in outcome.message
    assert len(port.applied) == applied

    retried = run(port, found=port.journal, retry_rolled_back=True)
    assert retried.status == ro.DONE, "retry_rolled_back starts the rollout again"
    assert retried.decision == "start"
    assert actions(port.journal)[0] == "start"


# -- the controller is killed ------------------------------------------------------------------------


def kill_on(effect, nth=1):
    seen = {"count": 0}

    def predicate(name, argument):
        if name == effect:
            seen["count"] += 1
            return seen["count"] == nth
        return False

    return predicate


@pytest.mark.parametrize(
    ("effect", "nth", "journal_step"),
    [
        ("wait", 2, 0),  # during the pause of step 2: applied, not gated, not recorded
        ("gate", 3, 0),  # while the gate of step 2 is evaluated
        ("apply", 3, 1),  # after step 2 was recorded, before step 3 is applied
        ("save", 5, 2),  # step 3 gated, its record not written
        ("save", 6, 3),  # every step recorded, "done" not written
    ],
)
def test_killed_mid_rollout_then_resumed(effect, nth, journal_step):
    port = FakePort()
    port.kill = kill_on(effect, nth)
    with pytest.raises(Killed):
        run(port)
    found = port.journal
    assert found.phase == jr.RUNNING
    assert found.step_index == journal_step

    outcome = run(port, found=found)
    assert outcome.status == ro.DONE
    assert outcome.decision == "resume"
    assert port.percent("lb1") == port.percent("lb2") == 100.0
    assert port.journal.phase == jr.DONE
    steps = [event.step_index for event in port.journal.events if event.action == "step"]
    assert steps == [0, 1, 2, 3], "every step recorded once, in order"
    assert "resume" in actions(port.journal)


@pytest.mark.parametrize(("effect", "nth"), [("wait", 2), ("apply", 3), ("gate", 2)])
def test_killed_mid_rollout_then_rolled_back_by_policy(effect, nth):
    port = FakePort()
    port.kill = kill_on(effect, nth)
    with pytest.raises(Killed):
        run(port)
    outcome = run(port, found=port.journal, resume_policy="rollback")
    assert outcome.status == ro.ROLLED_BACK
    assert outcome.decision == "rollback"
    assert port.percent("lb1") == port.percent("lb2") == 0.0
    assert port.journal.phase == jr.ROLLED_BACK


@pytest.mark.parametrize(
    ("effect", "nth"),
    [
        ("save", 3),  # the abort itself (failed step + abort in one write) never reached the disk
        ("apply", 3),  # the abort is recorded, the first abort step not applied
        ("wait", 3),  # between two abort steps (after 10% was applied and recorded)
    ],
)
def test_killed_mid_abort_then_the_rollback_is_finished(effect, nth):
    port = FakePort(gate=[ro.PASSED, ro.FAILED, ro.FAILED])
    port.kill = kill_on(effect, nth)
    with pytest.raises(Killed):
        run(port, abort_steps=[10, 0], abort_pause=1)
    found = port.journal
    outcome = run(port, found=found, resume_policy="resume", abort_steps=[10, 0], abort_pause=1)
    if found.phase == jr.ABORTING:
        assert outcome.decision == "rollback"
        assert outcome.status == ro.ROLLED_BACK
    else:  # killed before the abort was written: the failed step runs again and fails again
        assert outcome.decision == "resume"
        assert outcome.status == ro.ROLLED_BACK
    assert port.percent("lb1") == port.percent("lb2") == 0.0
    assert port.journal.phase == jr.ROLLED_BACK


def test_kill_before_the_first_journal_write_leaves_nothing_changed():
    port = FakePort()
    port.kill = kill_on("save", 1)
    with pytest.raises(Killed):
        run(port)
    assert port.applied == []
    assert port.journal is None


# -- mode rollback -----------------------------------------------------------------------------------


def test_mode_rollback_of_a_paused_rollout():
    port = FakePort(gate=[ro.PASSED, ro.FAILED])
    run(port, on_failure="pause")
    outcome = run(port, found=port.journal, mode="rollback", abort_steps=[10, 0])
    assert outcome.status == ro.ROLLED_BACK
    assert outcome.ok
    assert port.percent() == 0.0
    assert actions(port.journal)[-4:] == ["abort", "abort_step", "abort_step", "rolled_back"]


def test_mode_rollback_of_a_done_rollout_starts_a_journal_of_its_own():
    port = FakePort()
    run(port)
    outcome = run(port, found=port.journal, mode="rollback")
    assert outcome.status == ro.ROLLED_BACK
    assert outcome.ok
    assert actions(port.journal) == ["start", "abort", "abort_step", "rolled_back"]
    assert port.percent() == 0.0


def test_mode_rollback_of_a_rolled_back_rollout_does_nothing_even_when_the_servers_were_put_back():
    port = FakePort(gate=[ro.FAILED])
    run(port)
    for lb in LBS:
        port.lbs[lb]["app"]["app4"] = ServerState(256, "ready")  # back in the traffic with the previous version
    saved = len(port.saved)
    outcome = run(port, found=port.journal, mode="rollback")
    assert outcome.status == ro.ROLLED_BACK
    assert outcome.ok
    assert not outcome.changed
    assert "take traffic again on lb1, lb2" in outcome.message
    assert len(port.saved) == saved


def test_mode_rollback_with_no_canary_traffic_does_nothing():
    port = FakePort()
    outcome = run(port, mode="rollback")
    assert outcome.status == ro.ROLLED_BACK
    assert outcome.ok
    assert not outcome.changed
    assert port.saved == []


# -- check mode ----------------------------------------------------------------------------------------


def test_check_mode_plans_and_prints_without_changing_anything():
    port = FakePort()
    outcome = run(port, check_mode=True)
    assert outcome.status == ro.PLANNED
    assert outcome.ok
    assert outcome.changed, "a run would change the traffic"
    assert port.applied == []
    assert port.saved == []
    assert port.gate_calls == [None], "the gate is still checked (read only)"
    assert [planned.weight for planned in outcome.plan] == [10, 25, 50, 100]
    assert sum(1 for line in port.lines if "would run step" in line) == 4
    assert outcome.plan[0].as_dict()["servers"]["app4"]["weight"] == SPEC().target(10)["app"]["app4"].weight


def test_check_mode_of_a_resume_and_of_a_rollback():
    port = FakePort(gate=[ro.PASSED, ro.FAILED])
    run(port, on_failure="pause")
    saved = len(port.saved)
    resume = run(port, found=port.journal, check_mode=True)
    assert resume.status == ro.PLANNED
    assert [planned.weight for planned in resume.plan] == [25, 50, 100]
    rollback = run(port, found=port.journal, check_mode=True, mode="rollback", abort_steps=[10, 0])
    assert [planned.weight for planned in rollback.plan] == [10, 0]
    assert len(port.saved) == saved
    assert port.percent() == pytest.approx(25.0, abs=0.1)


# -- journals of several load balancers ---------------------------------------------------------------


def test_pick_journal_takes_the_most_advanced():
    port = FakePort()
    port.kill = kill_on("wait", 3)
    with pytest.raises(Killed):
        run(port)
    older, newer = port.saved[-2], port.saved[-1]
    assert ro.pick_journal({"lb1": newer, "lb2": older}) is newer
    assert ro.pick_journal({"lb1": older, "lb2": newer}) is newer
    assert ro.pick_journal({"lb1": None, "lb2": older}) is older
    assert ro.pick_journal({"lb1": None, "lb2": None}) is None


def test_a_journal_that_cannot_be_written_first_changes_nothing_later_says_where_traffic_is():
    port = FakePort()

    def refuse(journal):
        raise ro.SaveError("lb2: writing the journal /var/lib/strata/rollouts/app.json failed: read-only file system")

    port.save = refuse
    outcome = run(port)
    assert outcome.status == ro.REFUSED
    assert "Nothing was changed" in outcome.message
    assert port.applied == []

    port = FakePort()
    real_save = FakePort.save
    port.save = lambda journal: (
        refuse(journal) if journal.step_index == 1 and journal.phase == jr.RUNNING else real_save(port, journal)
    )
    outcome = run(port)
    assert outcome.status == ro.INTERRUPTED
    assert "read-only file system" in outcome.message
    assert "lb1 25.0%, lb2 25.0%" in outcome.message
