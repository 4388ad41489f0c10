from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.plan import (
    Step,
    abort_plan,
    build_plan,
    parse_duration,
    parse_percent,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (30, 30.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        (" 2M ", 120.0),
        ("1.5m", 90.0),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value, "pause") == seconds


@pytest.mark.parametrize("value", ["", "abc", "30x", "s", "-5", -1, True, None, [30], "1m 30s", "m30", float("nan")])
def test_parse_duration_rejects(value):
    with pytest.raises(TrafficSpecError) as exc:
        parse_duration(value, "steps[1].pause")
    assert exc.value.param == "steps[1].pause"
    assert "duration" in str(exc.value)


@pytest.mark.parametrize(("value", "percent"), [(0, 0.0), (100, 100.0), (12.5, 12.5), ("10", 10.0), ("10%", 10.0)])
def test_parse_percent(value, percent):
    assert parse_percent(value, "w") == percent


@pytest.mark.parametrize("value", [-1, 101, 100.01, "ten", True, None, float("nan"), {}])
def test_parse_percent_rejects(value):
    with pytest.raises(TrafficSpecError, match="between 0 and 100"):
        parse_percent(value, "w")


def test_plain_list():
    plan = build_plan([10, 25, 50, 100])
    assert [step.weight for step in plan] == [10, 25, 50, 100]
    assert [step.index for step in plan] == [0, 1, 2, 3]
    assert all(step.pause == 0 and not step.gate for step in plan)


def test_dict_steps_and_defaults():
    plan = build_plan(
        [10, {"weight": 25, "pause": "30s", "gate": True}, {"weight": 100, "gate": False}],
        default_pause="2m",
        default_gate=True,
    )
    assert plan == (
        Step(index=0, weight=10.0, pause=120.0, gate=True),
        Step(index=1, weight=25.0, pause=30.0, gate=True),
        Step(index=2, weight=100.0, pause=120.0, gate=False),
    )


def test_equal_neighbours_are_monotonic():
    assert [s.weight for s in build_plan([10, 10, 100, 100])] == [10, 10, 100, 100]


def test_non_monotonic_is_rejected_with_the_index():
    with pytest.raises(TrafficSpecError) as exc:
        build_plan([10, 50, 25, 100])
    assert exc.value.param == "steps[2]"
    assert "must not decrease" in exc.value.message
    assert "allow_non_monotonic" in exc.value.message


def test_not_ending_at_100_is_rejected():
    with pytest.raises(TrafficSpecError) as exc:
        build_plan([10, 50])
    assert exc.value.param == "steps"
    assert "last step must be 100" in exc.value.message


def test_allow_non_monotonic():
    plan = build_plan([10, 50, 25], allow_non_monotonic=True)
    assert [s.weight for s in plan] == [10, 50, 25]


@pytest.mark.parametrize(
    ("steps", "param", "text"),
    [
        ([], "steps", "at least one step"),
        ("10,100", "steps", "expected a list"),
        (None, "steps", "expected a list"),
        ([10, 101], "steps[1]", "between 0 and 100"),
        ([-5, 100], "steps[0]", "between 0 and 100"),
        ([{"pause": 3}], "steps[0]", "needs 'weight'"),
        ([{"weight": 100, "wait": 3}], "steps[0]", "unknown key(s) wait"),
        ([{"weight": 100, "gate": "yes"}], "steps[0].gate", "true or false"),
        ([{"weight": 100, "pause": "soon"}], "steps[0].pause", "duration"),
        ([{"weight": "x"}], "steps[0].weight", "percentage"),
    ],
)
def test_bad_specs_name_the_parameter(steps, param, text):
    with pytest.raises(TrafficSpecError) as exc:
        build_plan(steps)
    assert exc.value.param == param
    assert text in exc.value.message
    assert str(exc.value).startswith(f"{param}: ")


def test_custom_param_name():
    with pytest.raises(TrafficSpecError) as exc:
        build_plan([50, 10], param="canary_steps")
    assert exc.value.param == "canary_steps[1]"


def test_spec_error_is_a_value_error():
    with pytest.raises(ValueError):
        build_plan([200])


def test_abort_immediate():
    assert abort_plan(50) == (Step(index=0, weight=0.0),)
    assert abort_plan(50, "Immediate") == (Step(index=0, weight=0.0),)


def test_abort_gradual_from_the_current_weight():
    assert [s.weight for s in abort_plan(100, [50, 10, 0])] == [50, 10, 0]
    assert [s.weight for s in abort_plan(50, [50, 10, 0])] == [10, 0]
    assert [s.weight for s in abort_plan(25, [50, 10, 0])] == [10, 0]
    assert [s.weight for s in abort_plan(5, [50, 10, 0])] == [0]
    assert [s.index for s in abort_plan(25, [50, 10, 0])] == [0, 1]


def test_abort_from_zero_is_empty():
    assert abort_plan(0) == ()
    assert abort_plan(0, [50, 0]) == ()


def test_abort_pauses():
    plan = abort_plan(60, [{"weight": 50, "pause": "10s"}, 0], default_pause=5)
    assert [(s.weight, s.pause, s.gate) for s in plan] == [(50, 10, False), (0, 5, False)]


@pytest.mark.parametrize(
    ("steps", "param", "text"),
    [
        ([50, 10], "abort_steps", "last abort step must be 0"),
        ([10, 50, 0], "abort_steps[1]", "strictly decrease"),
        ([50, 50, 0], "abort_steps[1]", "strictly decrease"),
        ([], "abort_steps", "at least one step"),
        ("later", "abort_steps", "expected a list"),
        ([{"weight": 0, "gate": True}], "abort_steps[0].gate", "gates do not apply"),
    ],
)
def test_abort_bad_specs(steps, param, text):
    with pytest.raises(TrafficSpecError) as exc:
        abort_plan(80, steps)
    assert exc.value.param == param
    assert text in exc.value.message


def test_abort_bad_current_weight():
    with pytest.raises(TrafficSpecError) as exc:
        abort_plan(120)
    assert exc.value.param == "current_weight"
