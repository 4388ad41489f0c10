# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nginx OSS upstream-file client: the include file is the source of truth (nginx OSS has no runtime API).

Every apply renders the whole file, writes it atomically, runs ``nginx -t`` (the previous file is put back
if that fails, and the error carries nginx's output), then does ONE graceful reload whatever the number of
servers changed, and returns the reload's wall time.

How weights and states map onto nginx (which has neither weight 0 nor a drain state):

====================  ===============================  ============================
desired               written                          read back
====================  ===============================  ============================
weight W>0, ready     ``server A weight=W;``           W, ready
weight W>0, maint     ``server A weight=W down;``      W, maint
weight 0 (any state)  ``server A down;``               0, ready
drain                 as maint (a graceful reload lets old workers finish their requests)
====================  ===============================  ============================

``normalise`` applies this mapping to a desired state so that compare-and-set reports a change only when
the file would change.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    SERVER_STATES,
    Change,
    DiffRow,
    ServerState,
    changes_as_state,
    compute_changes,
    diff_rows,
    parse_desired,
    verify,
)

if TYPE_CHECKING:
    from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import State

DEFAULT_TIMEOUT = 30.0
HEADER = "# Managed by strata.deploy: rewritten on every traffic change, edits here are overwritten.\n"
_TOKEN = re.compile(r"[^\s;{}#\"'\\]+")
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_SIZE = re.compile(r"\d+[kKmM]?")
_DURATION = re.compile(r"\d+(ms|s|m|h|d)?")
SERVER_KEYS = frozenset({"address", "weight", "state", "backup", "max_fails", "fail_timeout", "max_conns"})
UPSTREAM_KEYS = frozenset({"name", "zone", "directives", "servers"})


class NginxError(Exception):
    """Base class of the errors of this client."""


class NginxParseError(NginxError):
    """The upstream file is not made of ``upstream NAME { ... }`` blocks this client can read."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class NginxCommandError(NginxError):
    """A command (``nginx -t``, the reload) could not run, timed out or failed."""

    def __init__(self, command: Sequence[str], output: str, message: str) -> None:
        self.command = list(command)
        self.output = output
        super().__init__(message)


class NginxConfigError(NginxCommandError):
    """``nginx -t`` rejected the new file; the previous file was restored."""


class NginxConflictError(NginxError, TrafficConflictError):
    """A server no longer shows the state the changes were computed from."""


class NginxVerifyError(NginxError, TrafficVerifyError):
    """The file read back differs from the desired state."""


@dataclass(frozen=True)
class UpstreamServer:
    """One ``server`` line; ``weight=None`` means no ``weight=`` was written (nginx's default is 1)."""

    address: str
    weight: int | None = None
    down: bool = False
    backup: bool = False
    max_fails: int | None = None
    fail_timeout: str | None = None
    max_conns: int | None = None
    extra: tuple[str, ...] = ()  # parameters this client does not manage, kept as written

    def as_state(self) -> ServerState:
        if self.down:
            return ServerState(weight=0, state=READY) if self.weight is None else ServerState(self.weight, MAINT)
        return ServerState(weight=1 if self.weight is None else self.weight, state=READY)

    def with_state(self, target: ServerState) -> UpstreamServer:
        wanted = normalise(target)
        if wanted.weight == 0:
            return replace(self, weight=None, down=True)
        return replace(self, weight=wanted.weight, down=wanted.state == MAINT)

    def render(self) -> str:
        parts = ["server", self.address]
        if self.weight is not None:
            parts.append(f"weight={self.weight}")
        if self.max_fails is not None:
            parts.append(f"max_fails={self.max_fails}")
        if self.fail_timeout is not None:
            parts.append(f"fail_timeout={self.fail_timeout}")
        if self.max_conns is not None:
            parts.append(f"max_conns={self.max_conns}")
        if self.backup:
            parts.append("backup")
        if self.down:
            parts.append("down")
        parts.extend(self.extra)
        return " ".join(parts) + ";"


@dataclass(frozen=True)
class Upstream:
    """One ``upstream`` block: ``zone NAME SIZE`` (when ``zone`` is set), other directives, servers."""

    name: str
    servers: tuple[UpstreamServer, ...]
    zone: str | None = None
    directives: tuple[tuple[str, ...], ...] = ()

    def render(self) -> str:
        lines = [f"upstream {self.name} {{"]
        if self.zone:
            lines.append(f"    zone {self.name} {self.zone};")
        lines.extend(f"    {' '.join(directive)};" for directive in self.directives)
        lines.extend(f"    {server.render()}" for server in self.servers)
        lines.append("}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NginxResult:
    changed: bool
    changes: list[Change] = field(default_factory=list)
    rows: list[DiffRow] = field(default_factory=list)
    before: str = ""
    after: str = ""
    reload_seconds: float | None = None  # wall time of the one reload command; None when nothing was reloaded


def normalise(target: ServerState) -> ServerState:
    """The form of ``target`` that an nginx upstream file can hold (see the module docstring)."""
    state = MAINT if target.state == DRAIN else target.state
    return ServerState(weight=target.weight, state=READY if target.weight == 0 else state)


# -- rendering from a desired description ---------------------------------------------------------


def _token(value: Any, param: str, what: str) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise TrafficSpecError(param, f"expected {what} without spaces, quotes, ';', '{{', '}}' or '#', got {value!r}")
    return value


def _int(value: Any, param: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TrafficSpecError(param, f"expected an integer of {minimum} or more, got {value!r}")
    return value


def server_from_spec(raw: Any, param: str) -> UpstreamServer:
    """``{address, weight, state, backup, max_fails, fail_timeout, max_conns}`` -> ``UpstreamServer``."""
    if not isinstance(raw, Mapping):
        raise TrafficSpecError(param, f"expected a dict with at least 'address', got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in SERVER_KEYS)
    if unknown:
        raise TrafficSpecError(param, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(SERVER_KEYS))}")
    if "address" not in raw:
        raise TrafficSpecError(param, "expected 'address' (host:port or unix:/path)")
    address = _token(raw["address"], f"{param}.address", "an address")
    weight = _int(raw.get("weight", 1), f"{param}.weight", 0)
    state = raw.get("state", READY)
    if state not in SERVER_STATES:
        raise TrafficSpecError(f"{param}.state", f"expected one of {', '.join(SERVER_STATES)}, got {state!r}")
    backup = raw.get("backup", False)
    if not isinstance(backup, bool):
        raise TrafficSpecError(f"{param}.backup", f"expected true or false, got {backup!r}")
    fail_timeout = raw.get("fail_timeout")
    if fail_timeout is not None:
        if isinstance(fail_timeout, int) and not isinstance(fail_timeout, bool):
            fail_timeout = str(fail_timeout)
        if not isinstance(fail_timeout, str) or not _DURATION.fullmatch(fail_timeout):
            raise TrafficSpecError(f"{param}.fail_timeout", f"expected an nginx time such as 10s, got {fail_timeout!r}")
    server = UpstreamServer(
        address=address,
        backup=backup,
        max_fails=None if raw.get("max_fails") is None else _int(raw["max_fails"], f"{param}.max_fails", 0),
        fail_timeout=fail_timeout,
        max_conns=None if raw.get("max_conns") is None else _int(raw["max_conns"], f"{param}.max_conns", 0),
    )
    return server.with_state(ServerState(weight=weight, state=state))


def upstreams_from_spec(raw: Any, *, param: str = "upstreams") -> list[Upstream]:
    """Validate a list of ``{name, zone, directives, servers}`` into ``Upstream`` blocks.

    ``zone`` defaults to ``64k`` (a shared zone keeps the weighted round-robin exact across workers);
    ``null`` leaves it out. ``directives`` are strings such as ``least_conn`` or ``keepalive 16``.
    """
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise TrafficSpecError(param, f"expected a list of upstreams, got {type(raw).__name__}")
    upstreams: list[Upstream] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{param}[{index}]"
        if not isinstance(item, Mapping):
            raise TrafficSpecError(where, f"expected a dict with 'name' and 'servers', got {type(item).__name__}")
        unknown = sorted(str(key) for key in item if key not in UPSTREAM_KEYS)
        if unknown:
            expected = ", ".join(sorted(UPSTREAM_KEYS))
            raise TrafficSpecError(where, f"unknown key(s) {', '.join(unknown)}; expected {expected}")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise TrafficSpecError(
                f"{where}.name", f"expected an upstream name (letters, digits, '-', '_', '.', ':'), got {name!r}"
            )
        if name in names:
            raise TrafficSpecError(f"{where}.name", f"upstream {name!r} is defined twice")
        names.add(name)
        zone = item.get("zone", "64k")
        if zone is not None and (not isinstance(zone, str) or not _SIZE.fullmatch(zone)):
            raise TrafficSpecError(f"{where}.zone", f"expected a size such as 64k, or null, got {zone!r}")
        directives = []
        for d_index, directive in enumerate(item.get("directives") or []):
            if not isinstance(directive, str) or not directive.strip():
                raise TrafficSpecError(f"{where}.directives[{d_index}]", f"expected a directive, got {directive!r}")
            words = tuple(_token(word, f"{where}.directives[{d_index}]", "a directive") for word in directive.split())
            if words[0] in ("server", "zone"):
                raise TrafficSpecError(f"{where}.directives[{d_index}]", f"use 'servers'/'zone' for {words[0]!r}")
            directives.append(words)
        servers_raw = item.get("servers")
        if isinstance(servers_raw, (str, bytes)) or not isinstance(servers_raw, Sequence) or not servers_raw:
            raise TrafficSpecError(f"{where}.servers", "expected a non-empty list of servers")
        servers = tuple(server_from_spec(s, f"{where}.servers[{i}]") for i, s in enumerate(servers_raw))
        addresses = [server.address for server in servers]
        duplicates = sorted({address for address in addresses if addresses.count(address) > 1})
        if duplicates:
            raise TrafficSpecError(f"{where}.servers", f"address(es) listed twice: {', '.join(duplicates)}")
        upstreams.append(Upstream(name=name, servers=servers, zone=zone, directives=tuple(directives)))
    return upstreams


def render_upstreams(upstreams: Sequence[Upstream], *, header: str = HEADER) -> str:
    """The include file for ``upstreams``."""
    return header + "\n".join(upstream.render() for upstream in upstreams)


# -- parsing the file back ------------------------------------------------------------------------


def _read_quoted(text: str, start: int, path: str, line: int) -> tuple[str, int]:
    end = text.find(text[start], start + 1)
    if end < 0:
        raise NginxParseError(path, line, "unterminated quoted string")
    return text[start + 1 : end], end + 1


def _read_word(text: str, start: int) -> tuple[str, int]:
    end = start
    while end < len(text) and not text[end].isspace() and text[end] not in "{};#\"'":
        end += 1
    return text[start:end], end


def _tokenize(text: str, path: str) -> list[tuple[str, int]]:
    """``(token, line)`` pairs: words, quoted strings (unquoted), ``{``, ``}`` and ``;``; comments dropped."""
    tokens: list[tuple[str, int]] = []
    line = 1
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            if char == "\n":
                line += 1
            i += 1
        elif char == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif char in "{};":
            tokens.append((char, line))
            i += 1
        else:
            start_line = line
            if char in "\"'":
                token, end = _read_quoted(text, i, path, line)
                line += text.count("\n", i, end)
            else:
                token, end = _read_word(text, i)
            tokens.append((token, start_line))
            i = end
    return tokens


def _parse_server(args: list[str], path: str, line: int) -> UpstreamServer:
    if not args:
        raise NginxParseError(path, line, "'server' without an address")
    values: dict[str, Any] = {"address": args[0]}
    extra = []
    for arg in args[1:]:
        key, sep, value = arg.partition("=")
        try:
            if sep and key == "weight":
                values["weight"] = int(value)
                if values["weight"] < 1:
                    raise ValueError(value)
            elif sep and key in ("max_fails", "max_conns"):
                values[key] = int(value)
            elif sep and key == "fail_timeout":
                values["fail_timeout"] = value
            elif not sep and arg in ("down", "backup"):
                values[arg] = True
            else:
                extra.append(arg)
        except ValueError:
            raise NginxParseError(path, line, f"invalid server parameter {arg!r}") from None
    return UpstreamServer(extra=tuple(extra), **values)


def _block_statements(
    tokens: list[tuple[str, int]], i: int, name: str, path: str, line: int
) -> tuple[list[tuple[list[str], int]], int]:
    """The ``;``-terminated statements of the block whose body starts at ``i``, and the index after its ``}``."""
    statements: list[tuple[list[str], int]] = []
    while True:
        if i >= len(tokens):
            raise NginxParseError(path, line, f"upstream {name!r} is not closed with '}}'")
        if tokens[i][0] == "}":
            return statements, i + 1
        statement: list[str] = []
        start_line = tokens[i][1]
        while i < len(tokens) and tokens[i][0] not in (";", "{", "}"):
            statement.append(tokens[i][0])
            i += 1
        if i >= len(tokens) or tokens[i][0] != ";":
            raise NginxParseError(path, start_line, f"expected ';' after {' '.join(statement)!r}")
        i += 1
        if statement:
            statements.append((statement, start_line))


def _build_upstream(name: str, statements: list[tuple[list[str], int]], path: str) -> Upstream:
    servers: list[UpstreamServer] = []
    directives: list[tuple[str, ...]] = []
    zone: str | None = None
    for statement, line in statements:
        if statement[0] == "server":
            server = _parse_server(statement[1:], path, line)
            if any(existing.address == server.address for existing in servers):
                raise NginxParseError(path, line, f"server {server.address} is listed twice in {name!r}")
            servers.append(server)
        elif statement[0] == "zone" and len(statement) == 3 and statement[1] == name and zone is None:
            zone = statement[2]
        else:
            directives.append(tuple(statement))
    return Upstream(name=name, servers=tuple(servers), zone=zone, directives=tuple(directives))


def parse_upstreams(text: str, path: str = "<upstreams>") -> list[Upstream]:
    """The ``upstream`` blocks of an include file (comments ignored; anything else is an error)."""
    tokens = _tokenize(text, path)
    upstreams: list[Upstream] = []
    i = 0
    while i < len(tokens):
        word, line = tokens[i]
        if word != "upstream" or i + 2 >= len(tokens) or tokens[i + 2][0] != "{":
            raise NginxParseError(path, line, f"expected 'upstream NAME {{', found {word!r}")
        name = tokens[i + 1][0]
        if any(upstream.name == name for upstream in upstreams):
            raise NginxParseError(path, line, f"upstream {name!r} is defined twice")
        statements, i = _block_statements(tokens, i + 3, name, path, line)
        upstreams.append(_build_upstream(name, statements, path))
    return upstreams


def upstreams_state(upstreams: Sequence[Upstream]) -> State:
    """``upstream -> address -> ServerState``."""
    return {u.name: {s.address: s.as_state() for s in u.servers} for u in upstreams}


def apply_changes(upstreams: Sequence[Upstream], changes: Sequence[Change]) -> list[Upstream]:
    """``upstreams`` with the weights/states of ``changes`` applied (other settings untouched)."""
    targets = changes_as_state(list(changes))
    updated = []
    for upstream in upstreams:
        wanted = targets.get(upstream.name, {})
        servers = tuple(
            server.with_state(wanted[server.address]) if server.address in wanted else server
            for server in upstream.servers
        )
        updated.append(replace(upstream, servers=servers))
    return updated


def _command(value: str | Sequence[str] | None, default: list[str]) -> list[str]:
    if value is None:
        return default
    command = shlex.split(value) if isinstance(value, str) else [str(part) for part in value]
    if not command:
        raise TrafficSpecError("command", "expected a command, got an empty one")
    return command


class NginxClient:
    """Manage one upstream include file of an nginx instance."""

    def __init__(
        self,
        upstream_file: str,
        *,
        conf_path: str = "/etc/nginx/nginx.conf",
        nginx_bin: str = "nginx",
        test_command: str | Sequence[str] | None = None,
        reload_command: str | Sequence[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        lb: str = "nginx",
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise TrafficSpecError("timeout", f"expected a number of seconds above 0, got {timeout!r}")
        self.upstream_file = upstream_file
        self.test_command = _command(test_command, [nginx_bin, "-t", "-c", conf_path])
        self.reload_command = _command(reload_command, [nginx_bin, "-c", conf_path, "-s", "reload"])
        self.timeout = timeout
        self.lb = lb
        self._run = run
        self._clock = clock

    # -- commands ----------------------------------------------------------------------------------

    def _execute(self, command: Sequence[str], what: str) -> tuple[int, str]:
        try:
            done = self._run(
                list(command),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise NginxCommandError(command, "", f"cannot {what}: {command[0]!r} not found") from None
        except subprocess.TimeoutExpired as exc:
            output = exc.output if isinstance(exc.output, str) else ""
            raise NginxCommandError(
                command, output, f"cannot {what}: {shlex.join(command)} did not finish within {self.timeout:g}s"
            ) from None
        return done.returncode, (done.stdout or "").strip()

    def test(self) -> str:
        """Run the test command (``nginx -t``); its output, or ``NginxCommandError`` when it fails."""
        code, output = self._execute(self.test_command, "test the nginx configuration")
        if code != 0:
            raise NginxCommandError(self.test_command, output, f"{shlex.join(self.test_command)} failed: {output}")
        return output

    def reload(self) -> float:
        """One graceful reload; returns its wall time in seconds."""
        started = self._clock()
        code, output = self._execute(self.reload_command, "reload nginx")
        elapsed = self._clock() - started
        if code != 0:
            raise NginxCommandError(
                self.reload_command,
                output,
                f"{shlex.join(self.reload_command)} failed (exit {code}): {output}; {self.upstream_file} passed "
                "the configuration test and was left in place, nginx may still run the previous one",
            )
        return elapsed

    # -- file --------------------------------------------------------------------------------------

    def read_text(self) -> str | None:
        try:
            with open(self.upstream_file, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NginxError(f"cannot read {self.upstream_file}: {exc}") from exc

    def read(self) -> list[Upstream]:
        """The upstream blocks of the file (an error if it does not exist: it is the source of truth)."""
        text = self.read_text()
        if text is None:
            raise NginxError(
                f"{self.upstream_file} does not exist: write it (write_upstreams, or the role's template) "
                "before changing weights"
            )
        return parse_upstreams(text, self.upstream_file)

    def current_state(self) -> State:
        return upstreams_state(self.read())

    def install(self, text: str) -> float | None:
        """Write ``text``, test, reload once; ``None`` (and nothing done) when the file already holds ``text``.

        If the test fails the previous file (or no file) is restored and ``NginxConfigError`` carries nginx's
        output; nginx was not reloaded and keeps serving the previous configuration.
        """
        previous = self.read_text()
        if previous == text:
            return None
        try:
            atomic_write(self.upstream_file, text)
        except OSError as exc:
            raise NginxError(f"cannot write {self.upstream_file}: {exc}") from exc
        code, output = self._execute(self.test_command, "test the nginx configuration")
        if code != 0:
            try:
                if previous is None:
                    os.unlink(self.upstream_file)
                else:
                    atomic_write(self.upstream_file, previous)
            except OSError as exc:
                raise NginxError(
                    f"{shlex.join(self.test_command)} rejected the new {self.upstream_file} ({output}) and restoring "
                    f"the previous file failed: {exc}; nginx was not reloaded"
                ) from exc
            raise NginxConfigError(
                self.test_command,
                output,
                f"{shlex.join(self.test_command)} rejected the new {self.upstream_file}, the previous file was "
                f"restored and nginx was not reloaded: {output}",
            )
        return self.reload()

    # -- compare-and-set ---------------------------------------------------------------------------

    def write_upstreams(self, upstreams: Sequence[Upstream], *, check_mode: bool = False) -> NginxResult:
        """Make the file hold exactly ``upstreams`` (from ``upstreams_from_spec``)."""
        before = self.read_text() or ""
        after = render_upstreams(upstreams)
        if before == after or check_mode:
            return NginxResult(changed=before != after, before=before, after=after)
        return NginxResult(changed=True, before=before, after=after, reload_seconds=self.install(after))

    def plan(self, desired: Mapping[str, Mapping[str, Any]]) -> tuple[list[Upstream], list[Change], list[DiffRow]]:
        """Read the file and compute the changes and diff rows for ``desired`` (nothing is written)."""
        spec = parse_desired(desired)
        upstreams = self.read()
        current = upstreams_state(upstreams)
        changes = compute_changes(spec, current, normalise=normalise)
        return upstreams, changes, diff_rows(spec, current, lb=self.lb, normalise=normalise)

    def converge(self, desired: Mapping[str, Mapping[str, Any]], *, check_mode: bool = False) -> NginxResult:
        """Set the weights/states of the servers in ``desired`` (``upstream -> address -> {weight, state}``)."""
        upstreams, changes, rows = self.plan(desired)
        before = render_upstreams(upstreams)
        if not changes or check_mode:
            after = render_upstreams(apply_changes(upstreams, changes))
            return NginxResult(changed=bool(changes), changes=changes, rows=rows, before=before, after=after)
        result = self.apply(changes)
        return replace(result, rows=rows)

    def apply(self, changes: Sequence[Change]) -> NginxResult:
        """Apply ``changes`` to the file with one test and one reload, then read the file back and verify."""
        changes = list(changes)
        upstreams = self.read()
        current = upstreams_state(upstreams)
        for change in changes:
            where = f"{change.backend}/{change.server}"
            if change.server not in current.get(change.backend, {}):
                raise UnknownTargetError(
                    where, f"no such server in upstream {change.backend!r} of {self.upstream_file}"
                )
            if current[change.backend][change.server] != change.before:
                raise NginxConflictError(
                    f"{where} no longer shows weight {change.before.weight} state {change.before.state} in "
                    f"{self.upstream_file}: someone else changed it; read it again"
                )
        before = render_upstreams(upstreams)
        after = render_upstreams(apply_changes(upstreams, changes))
        reload_seconds = self.install(after) if changes else None
        mismatches = verify(changes_as_state(changes), self.current_state(), normalise=normalise)
        if mismatches:
            raise NginxVerifyError(mismatches)
        return NginxResult(
            changed=bool(changes), changes=changes, before=before, after=after, reload_seconds=reload_seconds
        )
