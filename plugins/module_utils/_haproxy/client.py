# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAProxy runtime API client over the admin unix socket (standard library only).

One small method per runtime API call. Every connection has a timeout; only connecting is retried, and only
on transient errors (connection refused while haproxy reloads, EAGAIN when its backlog is full), with a
bounded, jittered exponential backoff. Nothing is retried once a command was sent.

``apply`` sends the weight/state changes of any number of servers of any number of backends as ``;``-joined
commands on ONE connection (one round trip; split only if the line would exceed ``MAX_LINE`` bytes), after
checking that every backend and server exists and still shows the state the changes were computed from.
It then reads ``show servers state`` back and verifies it.
"""

from __future__ import annotations

import errno
import random
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._files import atomic_write
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficConflictError,
    TrafficSpecError,
    TrafficVerifyError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import (
    DRAIN,
    MAINT,
    READY,
    Change,
    DiffRow,
    ServerState,
    changes_as_state,
    compute_changes,
    diff_rows,
    parse_desired,
    verify,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import HAPROXY

if TYPE_CHECKING:
    from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import State

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 4
MAX_LINE = 8000  # bytes per command line; haproxy's default tune.bufsize is 16384
MAX_ANSWER = 64 * 1024 * 1024
MAX_WEIGHT = HAPROXY.max_weight
TRANSIENT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EAGAIN, errno.EWOULDBLOCK})
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")

# srv_admin_state bits (haproxy include/haproxy/server-t.h)
ADMF_FMAINT = 0x01
ADMF_IMAINT = 0x02
ADMF_CMAINT = 0x04
ADMF_FDRAIN = 0x08
ADMF_IDRAIN = 0x10
ADMF_RMAINT = 0x20
ADMF_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_CMAINT | ADMF_RMAINT
ADMF_DRAIN = ADMF_FDRAIN | ADMF_IDRAIN
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


class HAProxyError(Exception):
    """Base class of the errors of this client."""


class HAProxySocketError(HAProxyError):
    """The runtime API socket cannot be used (missing, permission, refused, timeout)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class HAProxyCommandError(HAProxyError):
    """HAProxy answered a command with an error, or with something this client cannot parse."""

    def __init__(self, command: str, answer: str, message: str | None = None) -> None:
        self.command = command
        self.answer = answer
        super().__init__(message or f"haproxy answered {answer.strip()!r} to {command!r}")


class HAProxyConflictError(HAProxyError, TrafficConflictError):
    """A server no longer shows the state the changes were computed from."""


class HAProxyVerifyError(HAProxyError, TrafficVerifyError):
    """The commands were accepted but the read-back state differs from the desired state."""


@dataclass(frozen=True)
class ServerRecord:
    """One line of ``show servers state``."""

    backend: str
    server: str
    address: str
    port: int | None
    op_state: str
    admin_bits: int
    uweight: int
    iweight: int

    @property
    def admin_state(self) -> str:
        """``maint``, ``drain`` or ``ready`` from the admin state bits (maintenance wins over drain)."""
        if self.admin_bits & ADMF_MAINT:
            return MAINT
        if self.admin_bits & ADMF_DRAIN:
            return DRAIN
        return READY

    @property
    def weight(self) -> int:
        return self.uweight

    def as_state(self) -> ServerState:
        return ServerState(weight=self.uweight, state=self.admin_state)


@dataclass(frozen=True)
class ServerStat:
    """The session figures of one server, from ``show stat``."""

    backend: str
    server: str
    scur: int
    status: str


@dataclass(frozen=True)
class ApplyResult:
    changes: list[Change]
    commands: list[str]
    round_trips: int
    elapsed: float  # seconds spent sending the commands and reading their answers
    read_back: State
    state_file: str | None = None


@dataclass(frozen=True)
class ConvergeResult:
    changed: bool
    changes: list[Change]
    rows: list[DiffRow]
    commands: list[str]
    applied: ApplyResult | None = None


def check_name(name: str, what: str) -> str:
    """A backend or server name that is safe to put on a runtime API command line."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TrafficSpecError(what, f"expected an HAProxy name (letters, digits, '-', '_', '.', ':'), got {name!r}")
    return name


def server_ref(ref: str | tuple[str, str]) -> tuple[str, str]:
    """``("backend", "server")`` from that tuple or from ``"backend/server"``."""
    if isinstance(ref, str):
        backend, sep, server = ref.partition("/")
        if not sep:
            raise TrafficSpecError("servers", f"expected 'backend/server', got {ref!r}")
        ref = (backend, server)
    backend, server = ref
    return check_name(backend, "backend"), check_name(server, "server")


def commands_for(changes: Iterable[Change]) -> list[str]:
    """Runtime API commands for ``changes``.

    A server that becomes ready gets its weight first and its state second, so it never takes traffic with
    its old weight; a server leaving service gets its state first.
    """
    commands: list[str] = []
    for change in changes:
        target = f"{check_name(change.backend, 'backend')}/{check_name(change.server, 'server')}"
        weight = f"set server {target} weight {change.after.weight}" if change.weight_changed else None
        state = f"set server {target} state {change.after.state}" if change.state_changed else None
        ordered = (weight, state) if change.after.state == READY else (state, weight)
        commands.extend(command for command in ordered if command)
    return commands


def split_batches(commands: Sequence[str], max_line: int = MAX_LINE) -> list[list[str]]:
    """Group commands into as few ``;``-joined lines as fit in ``max_line`` bytes."""
    batches: list[list[str]] = []
    length = 0
    for command in commands:
        size = len(command.encode()) + 2
        if batches and length + size <= max_line:
            batches[-1].append(command)
            length += size
        else:
            batches.append([command])
            length = size
    return batches


def split_answers(text: str, count: int, line: str) -> list[str]:
    """The answers of ``count`` pipelined commands: haproxy ends each command's output with an empty line."""
    answers: list[str] = []
    current: list[str] = []
    *lines, tail = text.split("\n")
    for part in lines:
        if part == "":
            answers.append("\n".join(current))
            current = []
        else:
            current.append(part)
    if len(answers) != count or current or tail:
        raise HAProxyCommandError(line, text, f"expected {count} answer(s) to {line!r}, got {text!r}")
    return answers


def parse_servers_state(text: str, command: str = "show servers state") -> list[ServerRecord]:
    """Records from ``show servers state`` output (format version 1)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    if lines[0].strip() != "1":
        raise HAProxyCommandError(command, text)
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise HAProxyCommandError(command, text, f"no header line in the answer to {command!r}: {text!r}")
    fields = lines[1].lstrip("#").split()
    records = []
    for line in lines[2:]:
        values = line.split()
        if len(values) != len(fields):
            raise HAProxyCommandError(command, text, f"unexpected line in the answer to {command!r}: {line!r}")
        row = {name: values[index] for index, name in enumerate(fields)}
        try:
            port = row.get("srv_port", "0")
            records.append(
                ServerRecord(
                    backend=row["be_name"],
                    server=row["srv_name"],
                    address=row["srv_addr"],
                    port=int(port) if port.isdigit() and int(port) else None,
                    op_state=OP_STATES.get(int(row["srv_op_state"]), row["srv_op_state"]),
                    admin_bits=int(row["srv_admin_state"]),
                    uweight=int(row["srv_uweight"]),
                    iweight=int(row["srv_iweight"]),
                )
            )
        except (KeyError, ValueError) as exc:
            raise HAProxyCommandError(command, text, f"cannot parse {line!r} from {command!r}: {exc}") from None
    return records


def parse_stat(text: str, command: str = "show stat") -> list[ServerStat]:
    """Per-server session counts from ``show stat`` CSV (frontend and backend summary rows are skipped)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise HAProxyCommandError(command, text)
    fields = lines[0][2:].split(",")
    try:
        px, sv, scur, status = (fields.index(name) for name in ("pxname", "svname", "scur", "status"))
    except ValueError:
        raise HAProxyCommandError(command, text, f"unexpected header in the answer to {command!r}") from None
    stats = []
    for line in lines[1:]:
        if not line.strip():
            continue
        values = line.split(",")
        if len(values) < len(fields) - 1 or values[sv] in ("FRONTEND", "BACKEND"):
            continue
        stats.append(
            ServerStat(backend=values[px], server=values[sv], scur=int(values[scur] or 0), status=values[status])
        )
    return stats


def state_from_records(records: Iterable[ServerRecord]) -> State:
    state: State = {}
    for record in records:
        state.setdefault(record.backend, {})[record.server] = record.as_state()
    return state


class HAProxyClient:
    """Runtime API client for one haproxy admin socket."""

    def __init__(
        self,
        socket_path: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        lb: str = "haproxy",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if timeout <= 0:
            raise TrafficSpecError("timeout", f"expected a number of seconds above 0, got {timeout!r}")
        if retries < 0:
            raise TrafficSpecError("retries", f"expected 0 or more, got {retries!r}")
        self.socket_path = socket_path
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.lb = lb
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    # -- transport ---------------------------------------------------------------------------------

    def _socket_error(self, exc: OSError, doing: str) -> HAProxySocketError:
        path = self.socket_path
        if isinstance(exc, FileNotFoundError):
            message = (
                f"HAProxy runtime API socket {path} does not exist: check that haproxy is running and that its "
                f"global section has 'stats socket {path} level admin'"
            )
        elif isinstance(exc, PermissionError):
            message = (
                f"permission denied on HAProxy runtime API socket {path}: run as root or as a member of the "
                "socket's group, and check the mode/user/group of its 'stats socket' line"
            )
        elif isinstance(exc, (TimeoutError, socket.timeout)):  # distinct classes before Python 3.10
            message = (
                f"no answer from HAProxy runtime API socket {path} within {self.timeout:g}s while {doing}: "
                "check that haproxy is not overloaded or stuck (see its log)"
            )
        elif exc.errno in TRANSIENT_ERRNOS:
            message = (
                f"HAProxy runtime API socket {path} refused the connection {self.retries + 1} time(s) while "
                f"{doing}: haproxy is not accepting connections on it (stopped, or a reload did not finish)"
            )
        else:
            message = f"cannot use HAProxy runtime API socket {path} while {doing}: {exc}"
        return HAProxySocketError(path, message)

    def _delay(self, attempt: int) -> float:
        cap = min(self.max_backoff, self.backoff * (2**attempt))
        return cap / 2 + self._jitter() * cap / 2

    def _connect(self, doing: str) -> socket.socket:
        """A connected socket with the timeout set; retries only refused/EAGAIN connections."""
        attempt = 0
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
                return sock
            except OSError as exc:
                sock.close()
                transient = exc.errno in TRANSIENT_ERRNOS
                if not transient or attempt >= self.retries:
                    raise self._socket_error(exc, doing) from exc
                self._sleep(self._delay(attempt))
                attempt += 1

    def _exchange(self, line: str) -> str:
        """Send one command line and read the whole answer (haproxy closes the connection after it)."""
        doing = f"sending {line!r}"
        sock = self._connect(doing)
        deadline = self._clock() + self.timeout  # for the whole answer, not only for each recv()
        try:
            sock.sendall(line.encode() + b"\n")
            chunks: list[bytes] = []
            size = 0
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise TimeoutError("answer not complete before the deadline")
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                size += len(data)
                if size > MAX_ANSWER:
                    raise HAProxyCommandError(line, "", f"the answer to {line!r} exceeds {MAX_ANSWER} bytes")
        except OSError as exc:
            raise self._socket_error(exc, doing) from exc
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", errors="replace")

    # -- one wrapper per runtime API call ----------------------------------------------------------

    def command(self, command: str) -> str:
        """The raw answer to one command."""
        if "\n" in command or ";" in command:
            raise TrafficSpecError("command", f"expected one command without ';' or newline, got {command!r}")
        return self._exchange(command)

    def batch(self, commands: Sequence[str]) -> tuple[list[str], int]:
        """Answers to ``commands`` sent ``;``-joined (one connection per ``MAX_LINE`` bytes), and the round trips."""
        for command in commands:
            if "\n" in command or ";" in command:
                raise TrafficSpecError("commands", f"expected commands without ';' or newline, got {command!r}")
        answers: list[str] = []
        batches = split_batches(commands)
        for group in batches:
            line = "; ".join(group)
            answers.extend(split_answers(self._exchange(line), len(group), line))
        return answers, len(batches)

    def show_info(self) -> dict[str, str]:
        """``show info`` as a dict (``Pid``, ``Version``, ``Uptime_sec``, ...)."""
        info = {}
        for line in self.command("show info").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        return info

    def show_servers_state(self, backend: str | None = None) -> list[ServerRecord]:
        """Every server of ``backend`` (or of all backends) with its address, states and weights."""
        command = "show servers state" if backend is None else f"show servers state {check_name(backend, 'backend')}"
        return parse_servers_state(self.command(command), command)

    def show_stat(self, backend: str | None = None) -> list[ServerStat]:
        """Per-server current sessions (``scur``) of ``backend`` (or of all backends)."""
        command = "show stat" if backend is None else f"show stat {check_name(backend, 'backend')} 4 -1"
        return parse_stat(self.command(command), command)

    # -- compare-and-set ---------------------------------------------------------------------------

    def current_state(self) -> State:
        """``backend -> server -> ServerState`` read from ``show servers state``."""
        return state_from_records(self.show_servers_state())

    def plan(self, desired: Mapping[str, Mapping[str, Any]]) -> tuple[State, list[Change], list[DiffRow]]:
        """Read the current state and compute the changes and diff rows for ``desired`` (nothing is sent)."""
        spec = parse_desired(desired, max_weight=MAX_WEIGHT)
        current = self.current_state()
        return current, compute_changes(spec, current), diff_rows(spec, current, lb=self.lb)

    def converge(
        self,
        desired: Mapping[str, Mapping[str, Any]],
        *,
        check_mode: bool = False,
        state_file: str | None = None,
    ) -> ConvergeResult:
        """Bring the servers named in ``desired`` to it; in check mode only report what would be sent."""
        _current, changes, rows = self.plan(desired)
        commands = commands_for(changes)
        if not changes or check_mode:
            return ConvergeResult(changed=bool(changes), changes=changes, rows=rows, commands=commands)
        applied = self.apply(changes, state_file=state_file)
        return ConvergeResult(changed=True, changes=changes, rows=rows, commands=commands, applied=applied)

    def _check_changes(self, changes: Sequence[Change], current: State) -> None:
        for change in changes:
            where = f"{change.backend}/{change.server}"
            if change.backend not in current:
                known = ", ".join(sorted(current)) or "none"
                raise UnknownTargetError(where, f"no such backend {change.backend!r} (known backends: {known})")
            if change.server not in current[change.backend]:
                raise UnknownTargetError(where, f"no such server {change.server!r} in backend {change.backend!r}")
            if isinstance(change.after.weight, bool) or not 0 <= change.after.weight <= MAX_WEIGHT:
                raise TrafficSpecError(f"{where}.weight", f"expected 0..{MAX_WEIGHT}, got {change.after.weight!r}")
            now = current[change.backend][change.server]
            if now != change.before:
                raise HAProxyConflictError(
                    f"{where} shows weight {now.weight} state {now.state} but the change was computed from weight "
                    f"{change.before.weight} state {change.before.state}: someone else changed it; read it again"
                )

    def apply(self, changes: Sequence[Change], *, state_file: str | None = None) -> ApplyResult:
        """Send ``changes`` in one batch, check every answer, read back and verify; optionally save the state file.

        Every backend and server is checked (and compared with ``change.before``) before anything is sent, so an
        unknown name changes nothing. If haproxy rejects a command, the others of the batch were applied: the
        error lists the rejected ones and the read-back state.
        """
        changes = list(changes)
        commands = commands_for(changes)
        if not changes:
            return ApplyResult(changes=[], commands=[], round_trips=0, elapsed=0.0, read_back={})
        self._check_changes(changes, self.current_state())
        started = self._clock()
        answers, round_trips = self.batch(commands)
        elapsed = self._clock() - started
        rejected = [(command, answers[index]) for index, command in enumerate(commands) if answers[index].strip()]
        read_back = self.current_state()
        if rejected:
            detail = "; ".join(f"{command!r}: {answer.strip()!r}" for command, answer in rejected)
            denied = any("ermission" in answer for _cmd, answer in rejected)
            hint = " (the stats socket needs 'level admin')" if denied else ""
            raise HAProxyCommandError(
                rejected[0][0],
                rejected[0][1],
                f"haproxy rejected {len(rejected)} of {len(commands)} command(s){hint}: {detail}; "
                "the other commands were applied",
            )
        mismatches = verify(changes_as_state(changes), read_back)
        if mismatches:
            raise HAProxyVerifyError(mismatches)
        if state_file:
            self.save_state(state_file)
        return ApplyResult(
            changes=changes,
            commands=commands,
            round_trips=round_trips,
            elapsed=elapsed,
            read_back=read_back,
            state_file=state_file,
        )

    # -- draining and persistence ------------------------------------------------------------------

    def wait_drained(
        self,
        servers: Iterable[str | tuple[str, str]],
        drain_timeout: float,
        poll_interval: float = 0.5,
    ) -> dict[tuple[str, str], int]:
        """Poll ``show stat`` until every server has 0 current sessions or ``drain_timeout`` seconds passed.

        Returns the servers that still have sessions (``{(backend, server): scur}``; empty when drained).
        """
        refs = [server_ref(ref) for ref in servers]
        if drain_timeout < 0 or poll_interval <= 0:
            raise TrafficSpecError("drain_timeout", "expected drain_timeout >= 0 and poll_interval > 0")
        deadline = self._clock() + drain_timeout
        while True:
            sessions = {(s.backend, s.server): s.scur for s in self.show_stat()}
            unknown = [f"{b}/{s}" for b, s in refs if (b, s) not in sessions]
            if unknown:
                raise UnknownTargetError("servers", f"no such server(s): {', '.join(unknown)}")
            left = {ref: sessions[ref] for ref in refs if sessions[ref] > 0}
            remaining = deadline - self._clock()
            if not left or remaining <= 0:
                return left
            self._sleep(min(poll_interval, remaining))

    def save_state(self, path: str) -> int:
        """Write ``show servers state`` to ``path`` atomically (for ``server-state-file``); returns the server count.

        With ``server-state-file <path>`` in ``global`` and ``load-server-state-from-file global`` in
        ``defaults``, a reload keeps the runtime weights and states saved here.
        """
        text = self.command("show servers state")
        records = parse_servers_state(text)
        try:
            atomic_write(path, text.rstrip("\n") + "\n")
        except OSError as exc:
            raise HAProxyError(f"cannot write the server state file {path}: {exc}") from exc
        return len(records)


__all__ = [
    "ApplyResult",
    "ConvergeResult",
    "HAProxyClient",
    "HAProxyCommandError",
    "HAProxyConflictError",
    "HAProxyError",
    "HAProxySocketError",
    "HAProxyVerifyError",
    "ServerRecord",
    "ServerStat",
    "commands_for",
    "parse_servers_state",
    "parse_stat",
    "split_answers",
    "split_batches",
]
