# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Step plans: validate a user's ``steps`` / ``abort_steps`` and turn them into typed steps.

A step spec is a list whose items are either a number (the canary percentage, 0..100) or a dict
``{weight: 10, pause: "30s", gate: true}``. Durations accept seconds as numbers or strings with units
(``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``, ``"1m30s"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError

MIN_PERCENT = 0.0
MAX_PERCENT = 100.0
STEP_KEYS = frozenset({"weight", "pause", "gate"})
IMMEDIATE = "immediate"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Step:
    """One step of a plan: move the canary to ``weight`` percent, then wait ``pause`` seconds and/or a gate."""

    index: int
    weight: float
    pause: float = 0.0
    gate: bool = False


def parse_duration(value: Any, param: str) -> float:
    """Seconds from ``30``, ``2.5``, ``"30"``, ``"30s"``, ``"2m"``, ``"1h"``, ``"1m30s"`` or ``"500ms"``."""
    if isinstance(value, bool):
        raise TrafficSpecError(param, f"expected a duration such as 30, '30s' or '2m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        seconds = _parse_duration_text(text, param, value)
    else:
        raise TrafficSpecError(param, f"expected a duration such as 30, '30s' or '2m', got {type(value).__name__}")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise TrafficSpecError(param, f"expected a duration of 0 seconds or more, got {value!r}")
    return seconds


def _parse_duration_text(text: str, param: str, original: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise TrafficSpecError(param, f"expected a duration such as 30, '30s', '2m', '1h' or '1m30s', got {original!r}")
    return total


def parse_percent(value: Any, param: str) -> float:
    """A canary percentage 0..100 from a number or a string such as ``"10"`` or ``"10%"``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TrafficSpecError(param, f"expected a percentage between 0 and 100, got {value!r}")
    number: float
    if isinstance(value, str):
        text = value.strip()
        text = text[:-1].strip() if text.endswith("%") else text
        try:
            number = float(text)
        except ValueError:
            raise TrafficSpecError(param, f"expected a percentage between 0 and 100, got {value!r}") from None
    else:
        number = float(value)
    if math.isnan(number) or not MIN_PERCENT <= number <= MAX_PERCENT:
        raise TrafficSpecError(param, f"expected a percentage between 0 and 100, got {value!r}")
    return number


def _parse_gate(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise TrafficSpecError(param, f"expected true or false, got {value!r}")
    return value


def _parse_step(item: Any, index: int, param: str, default_pause: float, default_gate: bool) -> Step:
    where = f"{param}[{index}]"
    if isinstance(item, Mapping):
        unknown = sorted(str(key) for key in item if key not in STEP_KEYS)
        if unknown:
            raise TrafficSpecError(
                where, f"unknown key(s) {', '.join(unknown)}; a step accepts {', '.join(sorted(STEP_KEYS))}"
            )
        if "weight" not in item:
            raise TrafficSpecError(where, "a step dict needs 'weight' (the canary percentage, 0..100)")
        weight = parse_percent(item["weight"], f"{where}.weight")
        pause = parse_duration(item["pause"], f"{where}.pause") if "pause" in item else default_pause
        gate = _parse_gate(item["gate"], f"{where}.gate") if "gate" in item else default_gate
        return Step(index=index, weight=weight, pause=pause, gate=gate)
    return Step(index=index, weight=parse_percent(item, where), pause=default_pause, gate=default_gate)


def _require_list(steps: Any, param: str) -> Sequence[Any]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise TrafficSpecError(param, f"expected a list of percentages or step dicts, got {type(steps).__name__}")
    if not steps:
        raise TrafficSpecError(param, "expected at least one step")
    return steps


def build_plan(
    steps: Any,
    *,
    default_pause: Any = 0,
    default_gate: bool = False,
    allow_non_monotonic: bool = False,
    param: str = "steps",
) -> tuple[Step, ...]:
    """Validate a forward step spec and return its steps.

    Unless ``allow_non_monotonic`` is true, weights must never decrease and the last step must be 100
    (the rollout completes). With it, any sequence of 0..100 weights is accepted (for a soak that stops early
    or a deliberate step back).
    """
    items = _require_list(steps, param)
    pause = parse_duration(default_pause, "default_pause")
    gate = _parse_gate(default_gate, "default_gate")
    plan = tuple(_parse_step(item, index, param, pause, gate) for index, item in enumerate(items))
    if not allow_non_monotonic:
        for previous, step in _pairs(plan):
            if step.weight < previous.weight:
                raise TrafficSpecError(
                    f"{param}[{step.index}]",
                    f"weights must not decrease: {_fmt(step.weight)} follows {_fmt(previous.weight)} "
                    "(set allow_non_monotonic to allow it)",
                )
        if plan[-1].weight != MAX_PERCENT:
            raise TrafficSpecError(
                param,
                f"the last step must be 100 so the rollout completes, got {_fmt(plan[-1].weight)} "
                "(set allow_non_monotonic to stop earlier)",
            )
    return plan


def abort_plan(
    current_weight: Any,
    abort_steps: Any = IMMEDIATE,
    *,
    default_pause: Any = 0,
    param: str = "abort_steps",
) -> tuple[Step, ...]:
    """Steps that return the canary from ``current_weight`` to 0.

    ``abort_steps`` is ``"immediate"`` (one step to 0) or a strictly decreasing list ending at 0, such as
    ``[50, 10, 0]``; the steps at or above the current weight are skipped, so an abort at 25% runs
    ``[10, 0]``. Gates never apply on the way back. An abort from 0 is an empty plan.
    """
    current = parse_percent(current_weight, "current_weight")
    pause = parse_duration(default_pause, "default_pause")
    if isinstance(abort_steps, str) and abort_steps.strip().lower() == IMMEDIATE:
        spec: tuple[Step, ...] = (Step(index=0, weight=0.0),)
    else:
        items = _require_list(abort_steps, param)
        spec = tuple(_parse_step(item, index, param, pause, False) for index, item in enumerate(items))
        for previous, step in _pairs(spec):
            if step.weight >= previous.weight:
                raise TrafficSpecError(
                    f"{param}[{step.index}]",
                    f"abort steps must strictly decrease: {_fmt(step.weight)} follows {_fmt(previous.weight)}",
                )
        if spec[-1].weight != MIN_PERCENT:
            raise TrafficSpecError(param, f"the last abort step must be 0, got {_fmt(spec[-1].weight)}")
        for step in spec:
            if step.gate:
                raise TrafficSpecError(f"{param}[{step.index}].gate", "gates do not apply to abort steps")
    remaining = [step for step in spec if step.weight < current]
    return tuple(
        Step(index=index, weight=step.weight, pause=step.pause, gate=False) for index, step in enumerate(remaining)
    )


def _pairs(steps: Sequence[Step]) -> list[tuple[Step, Step]]:
    """Successive pairs (``itertools.pairwise`` needs Python 3.10; module_utils also run on older targets)."""
    return [(steps[index - 1], steps[index]) for index in range(1, len(steps))]


def _fmt(weight: float) -> str:
    return str(int(weight)) if weight.is_integer() else str(weight)
