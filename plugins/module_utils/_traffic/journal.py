# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout journal: a small JSON document that lets an interrupted rollout resume or roll back.

Shape (schema version 1)::

    {"schema_version": 1, "rollout_id": "web-42", "started_at": "2025-01-01T10:00:00Z",
     "updated_at": "...", "step_index": 1, "phase": "running",
     "desired": {backend: {server: {"weight": 26, "state": "ready"}}},
     "last_safe": {...same shape: the last state whose gates passed...},
     "events": [{"at": "...", "who": "...", "action": "step", "step_index": 1,
                 "before": {...}, "after": {...},
                 "gates": [{"name": "error_rate", "passed": true, "detail": "0.1% < 1%"}], "message": ""}]}

``step_index`` is -1 before the first step. Every function returns a new ``Journal`` (they never mutate).
Timestamps are UTC ISO 8601 with a ``Z``; pass ``now`` to make them deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import JournalError, TrafficSpecError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import parse_state, state_as_dict

if TYPE_CHECKING:
    from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import State

SCHEMA_VERSION = 1
RUNNING = "running"
PAUSED = "paused"
ABORTING = "aborting"
DONE = "done"
ROLLED_BACK = "rolled_back"
PHASES = (RUNNING, PAUSED, ABORTING, DONE, ROLLED_BACK)
FINISHED = (DONE, ROLLED_BACK)

RESUME = "resume"
ROLLBACK = "rollback"
NOTHING = "nothing"
RESUME_POLICIES = (RESUME, ROLLBACK)
_UTC = timezone.utc  # noqa: UP017 - datetime.UTC needs Python 3.11; module_utils also run on older targets

EVENT_ACTIONS = ("start", "step", "pause", "resume", "abort", "abort_step", "done", "rolled_back")
_TOP_KEYS = (
    "schema_version",
    "rollout_id",
    "started_at",
    "updated_at",
    "step_index",
    "phase",
    "desired",
    "last_safe",
    "events",
)
_EVENT_KEYS = ("at", "who", "action", "step_index", "before", "after", "gates", "message")
_GATE_KEYS = ("name", "passed", "detail")


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate (a metric check, a manual approval) evaluated after a step."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Event:
    """One thing that happened to the rollout: who did it, when, and the state before and after."""

    at: str
    who: str
    action: str
    step_index: int
    before: State | None = None
    after: State | None = None
    gates: tuple[GateResult, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class Journal:
    schema_version: int
    rollout_id: str
    started_at: str
    updated_at: str
    step_index: int
    phase: str
    desired: State
    last_safe: State
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Decision:
    """What to do with a journal found at the start of a run.

    ``action`` is ``resume`` (continue with step ``next_step``, the weights in ``weights`` are the last
    desired ones), ``rollback`` (return to the canary at 0; ``weights`` are the last safe ones) or ``nothing``.
    """

    action: str
    reason: str
    next_step: int = 0
    weights: State | None = None


def _stamp(now: datetime | None) -> str:
    moment = now or datetime.now(_UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return moment.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _gates(gates: Sequence[GateResult | Mapping[str, Any]]) -> tuple[GateResult, ...]:
    results = []
    for index, gate in enumerate(gates):
        if isinstance(gate, GateResult):
            results.append(gate)
        else:
            results.append(_load_gate(gate, f"gates[{index}]"))
    return tuple(results)


def _require_phase(journal: Journal, allowed: Sequence[str], doing: str) -> None:
    if journal.phase not in allowed:
        raise JournalError(
            f"{journal.rollout_id!r}",
            f"cannot {doing} in phase {journal.phase!r} (only in {', '.join(allowed)})",
        )


def _with_event(journal: Journal, event: Event, **fields: Any) -> Journal:
    return replace(journal, updated_at=event.at, events=(*journal.events, event), **fields)


def new_journal(rollout_id: str, *, current: State, who: str, now: datetime | None = None) -> Journal:
    """A journal for a rollout that starts from ``current`` (also the first last-safe state)."""
    if not isinstance(rollout_id, str) or not rollout_id:
        raise TrafficSpecError("rollout_id", f"expected a non-empty string, got {rollout_id!r}")
    at = _stamp(now)
    event = Event(at=at, who=who, action="start", step_index=-1, after=current)
    return Journal(
        schema_version=SCHEMA_VERSION,
        rollout_id=rollout_id,
        started_at=at,
        updated_at=at,
        step_index=-1,
        phase=RUNNING,
        desired=current,
        last_safe=current,
        events=(event,),
    )


def advance(
    journal: Journal,
    *,
    step_index: int,
    after: State,
    who: str,
    gates: Sequence[GateResult | Mapping[str, Any]] = (),
    message: str = "",
    now: datetime | None = None,
) -> Journal:
    """Record that step ``step_index`` set ``after``; it becomes the last safe state when every gate passed."""
    _require_phase(journal, (RUNNING,), "record a step")
    if step_index <= journal.step_index:
        raise JournalError(
            f"{journal.rollout_id!r}", f"step {step_index} is not after the last recorded step {journal.step_index}"
        )
    results = _gates(gates)
    event = Event(
        at=_stamp(now),
        who=who,
        action="step",
        step_index=step_index,
        before=journal.desired,
        after=after,
        gates=results,
        message=message,
    )
    safe = all(gate.passed for gate in results)
    return _with_event(
        journal, event, step_index=step_index, desired=after, last_safe=after if safe else journal.last_safe
    )


def pause(journal: Journal, *, who: str, message: str = "", now: datetime | None = None) -> Journal:
    """The rollout waits (for a manual gate, or an operator)."""
    _require_phase(journal, (RUNNING,), "pause")
    event = Event(at=_stamp(now), who=who, action="pause", step_index=journal.step_index, message=message)
    return _with_event(journal, event, phase=PAUSED)


def resume(journal: Journal, *, who: str, message: str = "", now: datetime | None = None) -> Journal:
    """A paused rollout continues."""
    _require_phase(journal, (PAUSED, RUNNING), "resume")
    event = Event(at=_stamp(now), who=who, action="resume", step_index=journal.step_index, message=message)
    return _with_event(journal, event, phase=RUNNING)


def mark_abort(
    journal: Journal,
    *,
    who: str,
    message: str,
    gates: Sequence[GateResult | Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> Journal:
    """The rollout is being rolled back (a gate failed, an operator aborted, a step could not be applied)."""
    _require_phase(journal, (RUNNING, PAUSED, ABORTING), "abort")
    event = Event(
        at=_stamp(now),
        who=who,
        action="abort",
        step_index=journal.step_index,
        before=journal.desired,
        gates=_gates(gates),
        message=message,
    )
    return _with_event(journal, event, phase=ABORTING)


def abort_step(journal: Journal, *, after: State, who: str, message: str = "", now: datetime | None = None) -> Journal:
    """Record one step of the way back."""
    _require_phase(journal, (ABORTING,), "record an abort step")
    event = Event(
        at=_stamp(now),
        who=who,
        action="abort_step",
        step_index=journal.step_index,
        before=journal.desired,
        after=after,
        message=message,
    )
    return _with_event(journal, event, desired=after)


def mark_done(journal: Journal, *, who: str, message: str = "", now: datetime | None = None) -> Journal:
    """Every step ran and passed its gates."""
    _require_phase(journal, (RUNNING,), "finish")
    event = Event(at=_stamp(now), who=who, action="done", step_index=journal.step_index, message=message)
    return _with_event(journal, event, phase=DONE)


def mark_rolled_back(
    journal: Journal, *, who: str, after: State, message: str = "", now: datetime | None = None
) -> Journal:
    """The way back completed: ``after`` is what the load balancers now show."""
    _require_phase(journal, (ABORTING,), "finish a rollback")
    event = Event(
        at=_stamp(now),
        who=who,
        action="rolled_back",
        step_index=journal.step_index,
        before=journal.desired,
        after=after,
        message=message,
    )
    return _with_event(journal, event, phase=ROLLED_BACK, desired=after)


def resume_decision(journal: Journal | None, policy: str) -> Decision:
    """What a new run does with the journal it finds.

    - no journal, or a finished one (``done``/``rolled_back``): ``nothing``;
    - ``aborting``: always ``rollback`` (a half-done abort is finished whatever the policy);
    - ``running``/``paused``: ``policy`` decides, ``resume`` or ``rollback``.
    """
    if policy not in RESUME_POLICIES:
        raise TrafficSpecError("resume_policy", f"expected one of {', '.join(RESUME_POLICIES)}, got {policy!r}")
    if journal is None:
        return Decision(NOTHING, "no rollout journal: nothing in flight")
    where = f"rollout {journal.rollout_id!r}"
    if journal.phase in FINISHED:
        return Decision(NOTHING, f"{where} already finished ({journal.phase})")
    if journal.phase == ABORTING:
        return Decision(
            ROLLBACK,
            f"{where} was interrupted while rolling back: finishing the rollback",
            next_step=journal.step_index,
            weights=journal.last_safe,
        )
    if policy == RESUME:
        return Decision(
            RESUME,
            f"{where} was interrupted in phase {journal.phase} after step {journal.step_index}: resuming",
            next_step=journal.step_index + 1,
            weights=journal.desired,
        )
    return Decision(
        ROLLBACK,
        f"{where} was interrupted in phase {journal.phase} after step {journal.step_index}: "
        "rolling back (resume_policy=rollback)",
        next_step=journal.step_index,
        weights=journal.last_safe,
    )


def _state_or_none(state: State | None) -> dict[str, Any] | None:
    return None if state is None else state_as_dict(state)


def to_dict(journal: Journal) -> dict[str, Any]:
    return {
        "schema_version": journal.schema_version,
        "rollout_id": journal.rollout_id,
        "started_at": journal.started_at,
        "updated_at": journal.updated_at,
        "step_index": journal.step_index,
        "phase": journal.phase,
        "desired": state_as_dict(journal.desired),
        "last_safe": state_as_dict(journal.last_safe),
        "events": [
            {
                "at": event.at,
                "who": event.who,
                "action": event.action,
                "step_index": event.step_index,
                "before": _state_or_none(event.before),
                "after": _state_or_none(event.after),
                "gates": [{"name": g.name, "passed": g.passed, "detail": g.detail} for g in event.gates],
                "message": event.message,
            }
            for event in journal.events
        ],
    }


def dumps(journal: Journal) -> str:
    """The journal as JSON text (sorted keys, one document, trailing newline)."""
    return json.dumps(to_dict(journal), indent=2, sort_keys=True) + "\n"


def _expect_keys(raw: Any, keys: Sequence[str], where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise JournalError(where, f"expected an object, got {type(raw).__name__}")
    missing = [key for key in keys if key not in raw]
    if missing:
        raise JournalError(where, f"missing key(s) {', '.join(missing)}")
    unknown = sorted(str(key) for key in raw if key not in keys)
    if unknown:
        raise JournalError(where, f"unknown key(s) {', '.join(unknown)}")
    return raw


def _expect_str(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise JournalError(where, f"expected a {'' if empty else 'non-empty '}string, got {value!r}")
    return value


def _expect_int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise JournalError(where, f"expected an integer of {minimum} or more, got {value!r}")
    return value


def _expect_time(value: Any, where: str) -> str:
    text = _expect_str(value, where, empty=False)
    try:
        datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise JournalError(where, f"expected an ISO 8601 timestamp, got {text!r}") from None
    return text


def _expect_state(value: Any, where: str) -> State:
    try:
        return parse_state(value, param=where)
    except TrafficSpecError as exc:
        raise JournalError(exc.param, exc.message) from None


def _expect_optional_state(value: Any, where: str) -> State | None:
    return None if value is None else _expect_state(value, where)


def _load_gate(raw: Any, where: str) -> GateResult:
    if isinstance(raw, Mapping) and "detail" not in raw:
        raw = {**raw, "detail": ""}
    gate = _expect_keys(raw, _GATE_KEYS, where)
    if not isinstance(gate["passed"], bool):
        raise JournalError(f"{where}.passed", f"expected true or false, got {gate['passed']!r}")
    return GateResult(
        name=_expect_str(gate["name"], f"{where}.name", empty=False),
        passed=gate["passed"],
        detail=_expect_str(gate["detail"], f"{where}.detail"),
    )


def _load_event(raw: Any, where: str) -> Event:
    event = _expect_keys(raw, _EVENT_KEYS, where)
    action = event["action"]
    if action not in EVENT_ACTIONS:
        raise JournalError(f"{where}.action", f"expected one of {', '.join(EVENT_ACTIONS)}, got {action!r}")
    if not isinstance(event["gates"], list):
        raise JournalError(f"{where}.gates", f"expected a list, got {type(event['gates']).__name__}")
    return Event(
        at=_expect_time(event["at"], f"{where}.at"),
        who=_expect_str(event["who"], f"{where}.who"),
        action=action,
        step_index=_expect_int(event["step_index"], f"{where}.step_index", -1),
        before=_expect_optional_state(event["before"], f"{where}.before"),
        after=_expect_optional_state(event["after"], f"{where}.after"),
        gates=tuple(_load_gate(gate, f"{where}.gates[{i}]") for i, gate in enumerate(event["gates"])),
        message=_expect_str(event["message"], f"{where}.message"),
    )


def from_dict(raw: Any) -> Journal:
    """Validate a decoded journal document; any problem is a ``JournalError`` that says where."""
    if isinstance(raw, Mapping) and raw.get("schema_version") != SCHEMA_VERSION and "schema_version" in raw:
        raise JournalError(
            "schema_version",
            f"unsupported version {raw['schema_version']!r} (this collection reads version {SCHEMA_VERSION}); "
            "was it written by a newer strata.deploy?",
        )
    doc = _expect_keys(raw, _TOP_KEYS, "document")
    phase = doc["phase"]
    if phase not in PHASES:
        raise JournalError("phase", f"expected one of {', '.join(PHASES)}, got {phase!r}")
    if not isinstance(doc["events"], list):
        raise JournalError("events", f"expected a list, got {type(doc['events']).__name__}")
    return Journal(
        schema_version=SCHEMA_VERSION,
        rollout_id=_expect_str(doc["rollout_id"], "rollout_id", empty=False),
        started_at=_expect_time(doc["started_at"], "started_at"),
        updated_at=_expect_time(doc["updated_at"], "updated_at"),
        step_index=_expect_int(doc["step_index"], "step_index", -1),
        phase=phase,
        desired=_expect_state(doc["desired"], "desired"),
        last_safe=_expect_state(doc["last_safe"], "last_safe"),
        events=tuple(_load_event(event, f"events[{i}]") for i, event in enumerate(doc["events"])),
    )


def loads(text: str | bytes) -> Journal:
    """Parse and validate journal JSON; a corrupt or truncated document is a ``JournalError``."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JournalError("document", f"is not valid JSON ({exc}); move it aside to start over") from None
    return from_dict(raw)
