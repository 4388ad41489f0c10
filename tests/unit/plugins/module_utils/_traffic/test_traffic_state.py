from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficSpecError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import (
    Change,
    DiffRow,
    Mismatch,
    ServerSpec,
    ServerState,
    changes_as_state,
    compute_changes,
    diff_rows,
    diff_text,
    format_rows,
    parse_desired,
    parse_state,
    resolve,
    state_as_dict,
    verify,
)


@pytest.fixture
def current():
    return {
        "app": {"a1": ServerState(100), "a2": ServerState(100), "a3": ServerState(50, "drain")},
        "api": {"p1": ServerState(10), "p2": ServerState(10, "maint")},
    }


def test_parse_desired_partial():
    desired = parse_desired(
        {"app": {"a1": {"weight": 5}, "a2": {"state": "drain"}, "a3": {"weight": 0, "state": "maint"}}}
    )
    assert desired == {
        "app": {"a1": ServerSpec(5, None), "a2": ServerSpec(None, "drain"), "a3": ServerSpec(0, "maint")}
    }


@pytest.mark.parametrize(
    ("raw", "param", "text"),
    [
        ([], "desired", "expected a dict of backend"),
        ({"app": []}, "desired.app", "expected a dict of server"),
        ({"app": {"a1": 5}}, "desired.app.a1", "expected a dict with 'weight'"),
        ({"app": {"a1": {}}}, "desired.app.a1", "expected 'weight' and/or 'state'"),
        ({"app": {"a1": {"weight": 1, "backup": True}}}, "desired.app.a1", "unknown key(s) backup"),
        ({"app": {"a1": {"weight": -1}}}, "desired.app.a1.weight", "integer weight between 0 and 256"),
        ({"app": {"a1": {"weight": 257}}}, "desired.app.a1.weight", "integer weight between 0 and 256"),
        ({"app": {"a1": {"weight": "5"}}}, "desired.app.a1.weight", "integer weight"),
        ({"app": {"a1": {"weight": True}}}, "desired.app.a1.weight", "integer weight"),
        ({"app": {"a1": {"state": "up"}}}, "desired.app.a1.state", "ready, drain, maint"),
        ({"": {"a1": {"weight": 1}}}, "desired", "non-empty backend name"),
        ({"app": {"": {"weight": 1}}}, "desired.app", "non-empty server name"),
    ],
)
def test_parse_desired_rejects(raw, param, text):
    with pytest.raises(TrafficSpecError) as exc:
        parse_desired(raw, max_weight=256)
    assert exc.value.param == param
    assert text in exc.value.message


def test_parse_state_requires_both_fields():
    assert parse_state({"b": {"s": {"weight": 1, "state": "ready"}}}) == {"b": {"s": ServerState(1, "ready")}}
    with pytest.raises(TrafficSpecError, match=r"state\.b\.s: expected both 'weight' and 'state'"):
        parse_state({"b": {"s": {"weight": 1}}})


def test_minimal_delta(current):
    desired = parse_desired(
        {
            "app": {"a1": {"weight": 100}, "a2": {"weight": 10}, "a3": {"state": "ready"}},
            "api": {"p2": {"state": "maint", "weight": 10}},
        }
    )
    changes = compute_changes(desired, current)
    assert changes == [
        Change("app", "a2", ServerState(100), ServerState(10)),
        Change("app", "a3", ServerState(50, "drain"), ServerState(50, "ready")),
    ]
    assert changes[0].weight_changed and not changes[0].state_changed
    assert changes[1].state_changed and not changes[1].weight_changed


def test_no_change_when_equal(current):
    assert compute_changes(parse_desired({"app": {"a1": {"weight": 100, "state": "ready"}}}), current) == []


def test_full_states_are_accepted_as_desired(current):
    changes = compute_changes({"api": {"p1": ServerState(0, "drain")}}, current)
    assert changes == [Change("api", "p1", ServerState(10), ServerState(0, "drain"))]


def test_unknown_backend_and_server(current):
    with pytest.raises(UnknownTargetError) as exc:
        compute_changes(parse_desired({"nope": {"a1": {"weight": 1}}}), current)
    assert exc.value.param == "desired.nope"
    assert "known backends: api, app" in exc.value.message
    with pytest.raises(UnknownTargetError) as exc:
        compute_changes(parse_desired({"app": {"zz": {"weight": 1}}}), current)
    assert exc.value.param == "desired.app.zz"
    assert "known servers: a1, a2, a3" in exc.value.message
    assert isinstance(exc.value, TrafficSpecError)


def test_normaliser_is_applied(current):
    def no_drain(state):
        return ServerState(state.weight, "maint" if state.state == "drain" else state.state)

    desired = parse_desired({"app": {"a3": {"state": "maint"}}})
    assert compute_changes(desired, current, normalise=no_drain) == [
        Change("app", "a3", ServerState(50, "drain"), ServerState(50, "maint"))
    ]
    assert resolve(parse_desired({"app": {"a1": {"state": "drain"}}}), current, normalise=no_drain) == {
        "app": {"a1": ServerState(100, "maint")}
    }


def test_changes_as_state():
    changes = [
        Change("b", "s", ServerState(1), ServerState(2)),
        Change("c", "t", ServerState(1), ServerState(0, "maint")),
    ]
    assert changes_as_state(changes) == {"b": {"s": ServerState(2)}, "c": {"t": ServerState(0, "maint")}}


def test_diff_rows_and_text(current):
    desired = parse_desired({"app": {"a1": {"weight": 100}, "a2": {"weight": 10, "state": "drain"}}})
    rows = diff_rows(desired, current, lb="lb1")
    assert rows == [
        DiffRow("lb1", "app", "a1", 100, "ready", 100, "ready"),
        DiffRow("lb1", "app", "a2", 100, "ready", 10, "drain"),
    ]
    assert [row.changed for row in rows] == [False, True]
    text = format_rows(rows)
    assert text.splitlines()[0].split() == [
        "lb", "backend", "server", "before_weight", "before_state", "after_weight", "after_state"
    ]  # fmt: skip
    assert text.splitlines()[2].split() == ["lb1", "app", "a2", "100", "ready", "10", "drain"]
    diff = diff_text(rows)
    assert diff["before"].splitlines()[2].split() == ["lb1", "app", "a2", "100", "ready"]
    assert diff["after"].splitlines()[2].split() == ["lb1", "app", "a2", "10", "drain"]
    with pytest.raises(TrafficSpecError):
        format_rows(rows, side="middle")


def test_diff_rows_without_lb_show_a_dash(current):
    text = format_rows(diff_rows(parse_desired({"api": {"p1": {"weight": 1}}}), current))
    assert text.splitlines()[1].split()[0] == "-"


def test_verify(current):
    desired = parse_desired(
        {"app": {"a1": {"weight": 100}, "a2": {"weight": 7, "state": "maint"}, "a9": {"weight": 1}}}
    )
    mismatches = verify(desired, current)
    assert mismatches == [
        Mismatch("app", "a2", "weight", 7, 100),
        Mismatch("app", "a2", "state", "maint", "ready"),
        Mismatch("app", "a9", "server", "present", None),
    ]
    assert str(mismatches[0]) == "app/a2 weight: expected 7, found 100"
    assert verify(parse_desired({"app": {"a3": {"state": "drain"}}}), current) == []


def test_verify_with_normaliser(current):
    def zero_is_ready(state):
        return ServerState(state.weight, "ready" if state.weight == 0 else state.state)

    read_back = {"app": {"a1": ServerState(0, "ready")}}
    assert verify({"app": {"a1": ServerState(0, "maint")}}, read_back) != []
    assert verify({"app": {"a1": ServerState(0, "maint")}}, read_back, normalise=zero_is_ready) == []


def test_state_as_dict(current):
    assert state_as_dict(current)["app"]["a3"] == {"weight": 50, "state": "drain"}
    assert parse_state(state_as_dict(current)) == current
