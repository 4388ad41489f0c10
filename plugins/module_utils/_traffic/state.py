# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare-and-set of server weights and admin states.

A *state* maps ``backend -> server -> ServerState(weight, state)`` where ``state`` is ``ready``, ``drain``
or ``maint``. A *desired* state may leave ``weight`` or ``state`` out (``None``: keep what is there).
The flow every provider client follows:

1. read the current state from the load balancer;
2. ``compute_changes(desired, current)``: the minimal list of changes (unknown backends/servers are an
   error before anything is sent);
3. apply the changes, read back, and ``verify(desired, read_back)`` returns the mismatches (empty = done).

``diff_rows`` and ``diff_text`` give the before/after table for diff mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficSpecError,
    UnknownTargetError,
)

READY = "ready"
DRAIN = "drain"
MAINT = "maint"
SERVER_STATES = (READY, DRAIN, MAINT)
SPEC_KEYS = frozenset({"weight", "state"})


@dataclass(frozen=True)
class ServerState:
    """What a load balancer reports (or should report) for one server."""

    weight: int
    state: str = READY

    def as_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "state": self.state}


@dataclass(frozen=True)
class ServerSpec:
    """A desired server state; a field left ``None`` keeps the current value."""

    weight: int | None = None
    state: str | None = None

    def resolve(self, current: ServerState) -> ServerState:
        return ServerState(
            weight=current.weight if self.weight is None else self.weight,
            state=current.state if self.state is None else self.state,
        )


if TYPE_CHECKING:  # aliases for annotations only: module_utils must still import on Python 3.8 targets
    from collections.abc import Callable

    State = dict[str, dict[str, ServerState]]
    Desired = dict[str, dict[str, ServerSpec]]
    Normaliser = Callable[[ServerState], ServerState]


@dataclass(frozen=True)
class Change:
    """One server whose weight and/or state must change."""

    backend: str
    server: str
    before: ServerState
    after: ServerState

    @property
    def weight_changed(self) -> bool:
        return self.before.weight != self.after.weight

    @property
    def state_changed(self) -> bool:
        return self.before.state != self.after.state


@dataclass(frozen=True)
class DiffRow:
    """One line of the before/after table."""

    lb: str
    backend: str
    server: str
    before_weight: int
    before_state: str
    after_weight: int
    after_state: str

    @property
    def changed(self) -> bool:
        return (self.before_weight, self.before_state) != (self.after_weight, self.after_state)


@dataclass(frozen=True)
class Mismatch:
    """A read-back value that differs from the desired one (``actual`` is ``None`` for a missing server)."""

    backend: str
    server: str
    field: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return f"{self.backend}/{self.server} {self.field}: expected {self.expected!r}, found {self.actual!r}"


def _check_name(value: Any, param: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TrafficSpecError(param, f"expected a non-empty {what} name, got {value!r}")
    return value


def _parse_spec(raw: Any, param: str, max_weight: int | None) -> ServerSpec:
    if isinstance(raw, (ServerSpec, ServerState)):
        raw = {"weight": raw.weight, "state": raw.state}
    if not isinstance(raw, Mapping):
        raise TrafficSpecError(param, f"expected a dict with 'weight' and/or 'state', got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in SPEC_KEYS)
    if unknown:
        raise TrafficSpecError(param, f"unknown key(s) {', '.join(unknown)}; expected 'weight' and/or 'state'")
    weight = raw.get("weight")
    state = raw.get("state")
    if weight is None and state is None:
        raise TrafficSpecError(param, "expected 'weight' and/or 'state'")
    if weight is not None:
        upper = "" if max_weight is None else f" and {max_weight}"
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise TrafficSpecError(f"{param}.weight", f"expected an integer weight between 0{upper}, got {weight!r}")
        if max_weight is not None and weight > max_weight:
            raise TrafficSpecError(f"{param}.weight", f"expected an integer weight between 0{upper}, got {weight!r}")
    if state is not None and state not in SERVER_STATES:
        raise TrafficSpecError(f"{param}.state", f"expected one of {', '.join(SERVER_STATES)}, got {state!r}")
    return ServerSpec(weight=weight, state=state)


def parse_desired(raw: Any, *, param: str = "desired", max_weight: int | None = None) -> Desired:
    """Validate ``{backend: {server: {weight, state}}}`` from user input into ``ServerSpec`` values."""
    if not isinstance(raw, Mapping):
        raise TrafficSpecError(param, f"expected a dict of backend -> server -> settings, got {type(raw).__name__}")
    desired: Desired = {}
    for backend, servers in raw.items():
        _check_name(backend, param, "backend")
        where = f"{param}.{backend}"
        if not isinstance(servers, Mapping):
            raise TrafficSpecError(where, f"expected a dict of server -> settings, got {type(servers).__name__}")
        desired[backend] = {}
        for server, spec in servers.items():
            _check_name(server, where, "server")
            desired[backend][server] = _parse_spec(spec, f"{where}.{server}", max_weight)
    return desired


def parse_state(raw: Any, *, param: str = "state", max_weight: int | None = None) -> State:
    """Validate a complete state (every server has both ``weight`` and ``state``)."""
    state: State = {}
    for backend, servers in parse_desired(raw, param=param, max_weight=max_weight).items():
        state[backend] = {}
        for server, spec in servers.items():
            if spec.weight is None or spec.state is None:
                raise TrafficSpecError(f"{param}.{backend}.{server}", "expected both 'weight' and 'state'")
            state[backend][server] = ServerState(weight=spec.weight, state=spec.state)
    return state


def state_as_dict(state: Mapping[str, Mapping[str, ServerState]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Plain JSON-able form of a state (for module results and the journal)."""
    return {
        backend: {server: value.as_dict() for server, value in servers.items()} for backend, servers in state.items()
    }


def resolve(
    desired: Mapping[str, Mapping[str, ServerSpec | ServerState]],
    current: Mapping[str, Mapping[str, ServerState]],
    *,
    normalise: Normaliser | None = None,
) -> State:
    """The complete target state of every server named in ``desired``.

    Unspecified fields keep their current value; ``normalise`` maps a state to the provider's canonical form
    (nginx writes weight 0 as ``down``, for instance) so that a change is reported only when one would happen.
    """
    target: State = {}
    for backend, servers in desired.items():
        if backend not in current:
            known = ", ".join(sorted(current)) or "none"
            raise UnknownTargetError(f"desired.{backend}", f"no such backend (known backends: {known})")
        target[backend] = {}
        for server, spec in servers.items():
            if server not in current[backend]:
                known = ", ".join(sorted(current[backend])) or "none"
                raise UnknownTargetError(
                    f"desired.{backend}.{server}", f"no such server in backend {backend} (known servers: {known})"
                )
            now = current[backend][server]
            wanted = spec.resolve(now) if isinstance(spec, ServerSpec) else spec
            target[backend][server] = normalise(wanted) if normalise else wanted
    return target


def compute_changes(
    desired: Mapping[str, Mapping[str, ServerSpec | ServerState]],
    current: Mapping[str, Mapping[str, ServerState]],
    *,
    normalise: Normaliser | None = None,
) -> list[Change]:
    """The minimal list of changes that turns ``current`` into ``desired`` (stable order: as in ``desired``)."""
    target = resolve(desired, current, normalise=normalise)
    changes = []
    for backend, servers in target.items():
        for server, after in servers.items():
            before = current[backend][server]
            if before != after:
                changes.append(Change(backend=backend, server=server, before=before, after=after))
    return changes


def changes_as_state(changes: list[Change]) -> State:
    """The target state of the servers touched by ``changes`` (what the read-back must show)."""
    target: State = {}
    for change in changes:
        target.setdefault(change.backend, {})[change.server] = change.after
    return target


def diff_rows(
    desired: Mapping[str, Mapping[str, ServerSpec | ServerState]],
    current: Mapping[str, Mapping[str, ServerState]],
    *,
    lb: str = "",
    normalise: Normaliser | None = None,
) -> list[DiffRow]:
    """One row per server named in ``desired``, changed or not, for diff mode and reports."""
    target = resolve(desired, current, normalise=normalise)
    rows = []
    for backend, servers in target.items():
        for server, after in servers.items():
            before = current[backend][server]
            rows.append(
                DiffRow(
                    lb=lb,
                    backend=backend,
                    server=server,
                    before_weight=before.weight,
                    before_state=before.state,
                    after_weight=after.weight,
                    after_state=after.state,
                )
            )
    return rows


def format_rows(rows: list[DiffRow], *, side: str = "both") -> str:
    """A fixed-width text table of ``rows``; ``side`` is ``before``, ``after`` or ``both``."""
    if side not in ("before", "after", "both"):
        raise TrafficSpecError("side", f"expected before, after or both, got {side!r}")
    header = ["lb", "backend", "server"]
    if side in ("before", "both"):
        header += ["weight", "state"] if side == "before" else ["before_weight", "before_state"]
    if side in ("after", "both"):
        header += ["weight", "state"] if side == "after" else ["after_weight", "after_state"]
    table = [header]
    for row in rows:
        line = [row.lb or "-", row.backend, row.server]
        if side in ("before", "both"):
            line += [str(row.before_weight), row.before_state]
        if side in ("after", "both"):
            line += [str(row.after_weight), row.after_state]
        table.append(line)
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() + "\n" for line in table)


def diff_text(rows: list[DiffRow]) -> dict[str, str]:
    """``{"before": ..., "after": ...}`` for an Ansible module's ``diff`` result."""
    return {"before": format_rows(rows, side="before"), "after": format_rows(rows, side="after")}


def verify(
    desired: Mapping[str, Mapping[str, ServerSpec | ServerState]],
    read_back: Mapping[str, Mapping[str, ServerState]],
    *,
    normalise: Normaliser | None = None,
) -> list[Mismatch]:
    """Every field of ``desired`` that the read-back state does not show (empty list: verified)."""
    mismatches = []
    for backend, servers in desired.items():
        for server, spec in servers.items():
            actual = read_back.get(backend, {}).get(server)
            if actual is None:
                mismatches.append(Mismatch(backend, server, "server", "present", None))
                continue
            wanted = spec.resolve(actual) if isinstance(spec, ServerSpec) else spec
            if normalise:
                wanted = normalise(wanted)
            if wanted.weight != actual.weight:
                mismatches.append(Mismatch(backend, server, "weight", wanted.weight, actual.weight))
            if wanted.state != actual.state:
                mismatches.append(Mismatch(backend, server, "state", wanted.state, actual.state))
    return mismatches
