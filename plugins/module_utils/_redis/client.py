# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A minimal Redis/Sentinel client speaking RESP2 over TCP, optionally TLS (standard library only).

Why not redis-py: it is not on a Debian host unless installed (python3-redis), and the few commands this
collection sends (AUTH, ROLE, REPLICAOF, CONFIG REWRITE, SENTINEL ...) need nothing beyond RESP2.

Every socket operation has a timeout. Only connecting is retried, and only on transient errors (connection
refused or reset while a server restarts, a timeout), with a bounded, jittered exponential backoff; nothing is
retried once a command was sent. Errors are typed: ``RedisConnectionError`` (cannot connect, timed out, closed;
``RedisTLSError`` for a failed handshake), ``RedisAuthError`` (AUTH refused, or NOAUTH), ``RedisPermissionError``
(NOPERM: the ACL user may not run the command), ``RedisReplyError`` (any other error reply, with its code such as
``ERR``, ``INPROG`` or ``NOGOODSLAVE``) and ``RedisProtocolError`` (an answer that is not RESP2).
Error messages name the server and the command, never a password.
"""

from __future__ import annotations

import errno
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 3.0
DEFAULT_CONNECT_RETRIES = 2
MAX_BULK = 64 * 1024 * 1024  # bytes; admin answers are small, user data is never read here
MAX_DEPTH = 8
TRANSIENT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EAGAIN})
_TIMEOUTS = (TimeoutError, socket.timeout)
# Commands whose arguments are secrets: error messages show only the command's first word(s).
_SECRET_COMMANDS = frozenset({"AUTH", "HELLO", "ACL", "CONFIG", "SENTINEL", "MIGRATE"})


class RedisError(Exception):
    """Base class of this client's errors; ``address`` is ``host:port`` of the server."""

    def __init__(self, address: str, message: str) -> None:
        self.address = address
        super().__init__(message)


class RedisConnectionError(RedisError):
    """The server cannot be reached, timed out, or closed the connection."""


class RedisTLSError(RedisConnectionError):
    """The TLS handshake failed (untrusted certificate, TLS spoken to a plain port, ...)."""


class RedisProtocolError(RedisError):
    """The answer is not RESP2 (not a Redis server, or a truncated answer)."""


class RedisReplyError(RedisError):
    """An error reply: ``code`` is its first word (``ERR``, ``INPROG``, ``NOGOODSLAVE``...), ``text`` the rest."""

    def __init__(self, address: str, command: str, code: str, text: str) -> None:
        self.command = command
        self.code = code
        self.text = text
        super().__init__(address, f"{address}: {command} failed: {code} {text}".rstrip())


class RedisPermissionError(RedisReplyError):
    """NOPERM: the ACL user is not allowed to run the command (or touch the key/channel)."""


class RedisAuthError(RedisReplyError):
    """AUTH was refused (WRONGPASS), or the server wants AUTH first (NOAUTH)."""


@dataclass(frozen=True)
class TLSOptions:
    """TLS settings: the CA that signed the server's certificate, and an optional client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_hostname: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def shown(args: tuple[Any, ...]) -> str:
    """The command for messages: secrets never shown (AUTH, CONFIG SET masterauth, SENTINEL SET auth-pass...)."""
    words = [_text(a) for a in args]
    if not words:
        return "(empty command)"
    head = words[0].upper()
    if head in _SECRET_COMMANDS:
        return " ".join(words[:2]) + (" ..." if len(words) > 2 else "")
    return " ".join(words)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def encode(args: tuple[Any, ...]) -> bytes:
    """A command as a RESP2 array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, bool):
            raise TypeError("a Redis argument cannot be a bool; send 'yes'/'no' or 1/0")
        elif isinstance(arg, (str, int, float)):
            data = str(arg).encode()
        else:
            raise TypeError(f"a Redis argument must be str, bytes or a number, got {type(arg).__name__}")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader:
    """Reads RESP2 replies from a socket with a buffer; every recv honours the socket's timeout."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address
        self.buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise RedisConnectionError(self.address, f"{self.address}: the server closed the connection")
        self.buffer += data

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_BULK:
                raise RedisProtocolError(self.address, f"{self.address}: a reply line longer than {MAX_BULK} bytes")
            self._fill()
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def exact(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            self._fill()
        data, tail, self.buffer = self.buffer[:size], self.buffer[size : size + 2], self.buffer[size + 2 :]
        if tail != b"\r\n":
            raise RedisProtocolError(self.address, f"{self.address}: a bulk string not followed by CRLF")
        return data

    def reply(self, command: str, depth: int = 0) -> Any:
        """One reply: str, int, None, list, or a ``RedisReplyError`` (returned, not raised, inside arrays)."""
        if depth > MAX_DEPTH:
            raise RedisProtocolError(self.address, f"{self.address}: replies nested deeper than {MAX_DEPTH}")
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", errors="replace")
        if kind == b"-":
            return error_reply(self.address, command, rest.decode("utf-8", errors="replace"))
        if kind == b":":
            return self._int(rest)
        if kind in (b"$", b"*"):
            return self._sized(kind, self._int(rest), command, depth)
        raise RedisProtocolError(
            self.address, f"{self.address}: not a RESP2 reply (starts with {line[:20]!r}); is this a Redis port?"
        )

    def _sized(self, kind: bytes, size: int, command: str, depth: int) -> Any:
        """A bulk string (``$``) or an array (``*``) of ``size`` (-1: nil)."""
        if size < 0:
            return None
        if kind == b"*":
            return [self.reply(command, depth + 1) for _index in range(size)]
        if size > MAX_BULK:
            raise RedisProtocolError(self.address, f"{self.address}: a bulk string of {size} bytes")
        return self.exact(size).decode("utf-8", errors="replace")

    def _int(self, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError:
            raise RedisProtocolError(self.address, f"{self.address}: expected an integer, got {raw[:20]!r}") from None


def error_reply(address: str, command: str, message: str) -> RedisReplyError:
    code, _sep, text = message.partition(" ")
    if code == "NOPERM":
        return RedisPermissionError(address, command, code, text)
    if code in ("WRONGPASS", "NOAUTH") or message.startswith("ERR invalid password"):
        return RedisAuthError(address, command, code, text)
    return RedisReplyError(address, command, code, text)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (*_TIMEOUTS, ConnectionRefusedError, ConnectionResetError)):
        return True
    if isinstance(exc, socket.gaierror):
        return exc.errno == socket.EAI_AGAIN
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


class RedisClient:
    """One connection to a Redis server or Sentinel; ``with RedisClient(...) as r: r.execute("ROLE")``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_retries: int = DEFAULT_CONNECT_RETRIES,
        tls: TLSOptions | None = None,
        backoff: float = 0.1,
        max_backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.username = username or None
        self.password = password or None
        self.timeout = timeout
        self.connect_retries = max(0, connect_retries)
        self.tls = tls
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._jitter = jitter
        self._sock: socket.socket | None = None
        self._reader: _Reader | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __enter__(self) -> RedisClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        """Open the connection (retrying transient failures) and AUTH when a password is set."""
        if self._sock is not None:
            return
        attempt = 0
        while True:
            try:
                self._sock = self._open()
                break
            except ssl.SSLError as exc:
                raise RedisTLSError(self.address, f"{self.address}: TLS handshake failed: {exc}") from None
            except OSError as exc:
                if attempt >= self.connect_retries or not is_transient(exc):
                    what = "timed out" if isinstance(exc, _TIMEOUTS) else (exc.strerror or str(exc))
                    raise RedisConnectionError(
                        self.address, f"{self.address}: cannot connect ({what}) after {attempt + 1} attempt(s)"
                    ) from None
                delay = min(self.max_backoff, self.backoff * (2**attempt))
                self._sleep(delay / 2 + self._jitter() * delay / 2)
                attempt += 1
        self._reader = _Reader(self._sock, self.address)
        if self.password is not None:
            args: tuple[Any, ...] = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            try:
                self.execute(*args)
            except RedisReplyError as exc:
                self.close()
                who = f"user {self.username!r}" if self.username else "the default user"
                raise RedisAuthError(self.address, "AUTH", exc.code, f"({who}) {exc.text}") from None

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.settimeout(self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                server_name = self.tls.server_hostname or self.host
                sock = self.tls.context().wrap_socket(sock, server_hostname=server_name)
            return sock
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._reader = None

    def execute(self, *args: Any) -> Any:
        """Send one command and return its reply; an error reply raises its typed ``RedisReplyError``."""
        reply = self.pipeline([args])[0]
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send several commands in one write, return every reply (error replies as ``RedisReplyError`` values).
        Connection failures raise; the connection is closed then (its state is unknown)."""
        if self._sock is None or self._reader is None:
            self.connect()
        sock, reader = self._sock, self._reader
        if sock is None or reader is None:
            raise RedisConnectionError(self.address, f"{self.address}: not connected")
        try:
            sock.sendall(b"".join(encode(tuple(c)) for c in commands))
            return [reader.reply(shown(tuple(c))) for c in commands]
        except _TIMEOUTS:
            self.close()
            raise RedisConnectionError(
                self.address, f"{self.address}: no answer within {self.timeout}s to {shown(tuple(commands[0]))}"
            ) from None
        except ssl.SSLError as exc:
            self.close()
            raise RedisTLSError(self.address, f"{self.address}: TLS error: {exc}") from None
        except OSError as exc:
            self.close()
            reason = exc.strerror or str(exc)
            raise RedisConnectionError(self.address, f"{self.address}: connection failed: {reason}") from None
        except RedisError:
            self.close()
            raise
