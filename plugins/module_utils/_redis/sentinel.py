# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Sentinels say, and what to change: the logic behind ``strata.deploy.redis_sentinel``.

The rule that makes re-runs safe after a failover: the master is whatever the Sentinels advertise. The
configured primary is only a BOOTSTRAP address, used when a majority of the Sentinels answer and none of them
monitors the master name yet (a new deployment); and even then, if that host already replicates from another
node, that node is taken. When fewer than a majority answer and none knows the master, nothing is decided:
guessing could revert a failover.

Sentinels can disagree for a moment (during a failover, or when one was partitioned); the highest
``config-epoch`` wins, then the most common answer.

Functions here that talk to servers take a ``connect(address) -> RedisClient`` callable (not yet connected), so
the module decides credentials, timeouts and TLS, and tests can point them at real servers on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.strata.deploy.plugins.module_utils._redis.client import (
    RedisClient,
    RedisError,
    RedisProtocolError,
    RedisReplyError,
)

# SENTINEL SET options this collection manages, with the field of SENTINEL MASTER that shows each one.
READABLE_OPTIONS = ("quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs")
# Not shown by SENTINEL MASTER: compared with what Sentinel persisted in its configuration file.
PERSISTED_OPTIONS = ("auth-user", "auth-pass")
SECRET_OPTIONS = frozenset({"auth-pass"})
MASK = "********"
# ROLE link states of a replica whose link to the master is established (sync = full resync in progress).
LINK_UP = frozenset({"sync", "connected"})


class SentinelStateError(Exception):
    """The deployment is not in a state where the requested change is safe; the message says why."""


@dataclass(frozen=True, order=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Address:
        """``host:port``, ``[v6]:port``, or ``host`` alone when ``default_port`` is given."""
        text = str(text).strip()
        host, port = text, None
        if text.startswith("["):
            host, _sep, rest = text[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif text.count(":") == 1:
            host, port = text.split(":")
        if port is None:
            if default_port is None:
                raise ValueError(f"expected host:port, got {text!r}")
            return cls(host, int(default_port))
        if not port.isdigit() or not host:
            raise ValueError(f"expected host:port, got {text!r}")
        return cls(host, int(port))


@dataclass(frozen=True)
class HostSpec:
    """An address pattern: a host, and optionally a port (``redis1`` matches any port of redis1)."""

    host: str
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> HostSpec:
        text = str(text).strip()
        with contextlib.suppress(ValueError):
            address = Address.parse(text)
            return cls(address.host, address.port)
        return cls(text.strip("[]"), None)

    def matches(self, address: Address | None) -> bool:
        return address is not None and address.host == self.host and self.port in (None, address.port)

    def __str__(self) -> str:
        return self.host if self.port is None else str(Address(self.host, self.port))


Connect = Callable[[Address], RedisClient]


def fields(reply: Any, address: str = "") -> dict[str, str]:
    """A flat ``[key, value, key, value...]`` reply (SENTINEL MASTER, each entry of SENTINEL REPLICAS) as a dict."""
    if not isinstance(reply, list) or len(reply) % 2:
        raise RedisProtocolError(address, f"{address}: expected a flat list of field/value pairs, got {reply!r}")
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply), 2)}


@dataclass
class SentinelView:
    """What one Sentinel says about the master name."""

    sentinel: Address
    master: Address | None = None  # None: this Sentinel does not monitor the name (or did not answer)
    config_epoch: int = 0
    flags: tuple[str, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.error is None

    @property
    def known(self) -> bool:
        return self.master is not None

    @property
    def failover_in_progress(self) -> bool:
        return "failover_in_progress" in self.flags

    def as_dict(self) -> dict[str, Any]:
        return {
            "sentinel": str(self.sentinel),
            "answered": self.answered,
            "monitors": self.known,
            "master": str(self.master) if self.master else None,
            "config_epoch": self.config_epoch,
            "flags": list(self.flags),
            "error": self.error,
        }


def view_from_master_fields(sentinel: Address, info: Mapping[str, str]) -> SentinelView:
    try:
        master = Address(info["ip"], int(info["port"]))
        epoch = int(info.get("config-epoch", "0"))
    except (KeyError, ValueError):
        raise RedisProtocolError(
            str(sentinel), f"{sentinel}: SENTINEL MASTER without ip/port: {dict(info)!r}"
        ) from None
    flags = tuple(f for f in info.get("flags", "").split(",") if f)
    return SentinelView(sentinel, master, epoch, flags, {k: info[k] for k in READABLE_OPTIONS if k in info})


def ask_sentinel(connect: Connect, sentinel: Address, name: str) -> SentinelView:
    """SENTINEL MASTER on one Sentinel; a Sentinel that cannot be asked is a view with ``error`` set."""
    try:
        with connect(sentinel) as client:
            return view_from_master_fields(sentinel, fields(client.execute("SENTINEL", "MASTER", name), str(sentinel)))
    except RedisReplyError as exc:
        if "No such master" in exc.text:
            return SentinelView(sentinel)
        return SentinelView(sentinel, error=str(exc))
    except RedisError as exc:
        return SentinelView(sentinel, error=str(exc))


def ask_sentinels(connect: Connect, sentinels: Sequence[Address], name: str) -> list[SentinelView]:
    return [ask_sentinel(connect, s, name) for s in sentinels]


@dataclass
class MasterChoice:
    master: Address | None
    source: str  # "sentinel" or "bootstrap"
    agreed: bool  # every Sentinel answered, monitors the name and names the same master
    views: list[SentinelView]
    note: str = ""

    @property
    def failover_in_progress(self) -> bool:
        return any(v.failover_in_progress for v in self.views)

    def as_dict(self) -> dict[str, Any]:
        return {
            "master": str(self.master) if self.master else None,
            "host": self.master.host if self.master else None,
            "port": self.master.port if self.master else None,
            "source": self.source,
            "agreed": self.agreed,
            "note": self.note,
        }


def choose_master(views: Sequence[SentinelView], name: str) -> MasterChoice:
    """The master the Sentinels advertise, or ``source="bootstrap"`` when a majority answered and none knows it.

    Raises ``SentinelStateError`` when fewer than a majority answered and none knows the master."""
    views = list(views)
    answered = [v for v in views if v.answered]
    knowing = [v for v in answered if v.known]
    if knowing:
        top = max(v.config_epoch for v in knowing)
        votes = Counter(v.master for v in knowing if v.config_epoch == top)
        best = sorted(votes.items(), key=lambda item: (-item[1], str(item[0])))[0][0]
        agreed = len(knowing) == len(views) and all(v.master == best for v in knowing)
        note = "" if agreed else _disagreement(views)
        return MasterChoice(best, "sentinel", agreed, views, note)
    if len(answered) * 2 > len(views):
        note = f"no Sentinel of {len(answered)} answering monitors {name}"
        return MasterChoice(None, "bootstrap", False, views, note)
    errors = "; ".join(v.error or "" for v in views if not v.answered)
    raise SentinelStateError(
        f"only {len(answered)} of {len(views)} Sentinels answered and none of them monitors {name!r} ({errors}). "
        "Refusing to fall back to the configured primary: after a failover that would revert it. "
        "Bring a majority of the Sentinels back, then re-run."
    )


def _disagreement(views: Iterable[SentinelView]) -> str:
    parts = []
    for v in views:
        if not v.answered:
            parts.append(f"{v.sentinel}: no answer")
        elif not v.known:
            parts.append(f"{v.sentinel}: does not monitor it")
        else:
            parts.append(f"{v.sentinel}: {v.master} (epoch {v.config_epoch})")
    return "Sentinels differ - " + ", ".join(parts)


@dataclass(frozen=True)
class NodeRole:
    """A Redis node's ROLE: ``master`` (with its replicas), ``slave`` (with its master and link state)."""

    role: str
    master: Address | None = None
    link: str | None = None
    offset: int = 0
    replicas: tuple[Address, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": "replica" if self.role == "slave" else self.role,
            "master": str(self.master) if self.master else None,
            "link": self.link,
            "offset": self.offset,
            "replicas": [str(r) for r in self.replicas],
        }


def parse_role(reply: Any, address: str = "") -> NodeRole:
    if not isinstance(reply, list) or not reply:
        raise RedisProtocolError(address, f"{address}: unexpected ROLE reply {reply!r}")
    kind = str(reply[0])
    try:
        if kind == "master":
            replicas = tuple(Address(str(r[0]), int(r[1])) for r in (reply[2] if len(reply) > 2 else []))
            return NodeRole("master", offset=int(reply[1]), replicas=replicas)
        if kind == "slave":
            return NodeRole("slave", Address(str(reply[1]), int(reply[2])), str(reply[3]), int(reply[4]))
    except (IndexError, TypeError, ValueError):
        raise RedisProtocolError(address, f"{address}: unexpected ROLE reply {reply!r}") from None
    return NodeRole(kind)


def node_role(connect: Connect, node: Address) -> NodeRole:
    with connect(node) as client:
        return parse_role(client.execute("ROLE"), str(node))


def resolve_bootstrap(connect: Connect, bootstrap: Address) -> tuple[Address, str]:
    """The configured primary, or the node it replicates from when it is already a replica (one hop)."""
    try:
        role = node_role(connect, bootstrap)
    except RedisError as exc:
        raise SentinelStateError(
            f"no Sentinel monitors the master yet and the configured primary {bootstrap} cannot be asked: {exc}"
        ) from None
    if role.role == "master":
        return bootstrap, f"bootstrap: no Sentinel monitors the master yet; the configured primary {bootstrap} is it"
    if role.role == "slave" and role.master is not None:
        try:
            upstream = node_role(connect, role.master)
        except RedisError as exc:
            raise SentinelStateError(
                f"the configured primary {bootstrap} replicates from {role.master}, which cannot be asked: {exc}"
            ) from None
        if upstream.role == "master":
            return role.master, (
                f"bootstrap: the configured primary {bootstrap} already replicates from {role.master}; "
                f"{role.master} is the master"
            )
    raise SentinelStateError(
        f"no Sentinel monitors the master and the configured primary {bootstrap} is a {role.role} whose master "
        f"is not a master: fix replication by hand (REPLICAOF NO ONE on the node that should be master), then re-run"
    )


def current_master(
    connect_sentinel: Connect, connect_node: Connect, sentinels: Sequence[Address], name: str, bootstrap: Address | None
) -> MasterChoice:
    choice = choose_master(ask_sentinels(connect_sentinel, sentinels, name), name)
    if choice.source == "bootstrap":
        if bootstrap is None:
            raise SentinelStateError(f"no Sentinel monitors {name!r} and no bootstrap_master was given")
        choice.master, choice.note = resolve_bootstrap(connect_node, bootstrap)
    return choice


# -- the monitored master's settings on one Sentinel ------------------------------------------------


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "a": "\a"}


def _double_quoted(line: str, i: int) -> tuple[str, int]:
    """The word of a double-quoted string that starts after ``line[i - 1]``, and the index after its quote."""
    word: list[str] = []
    n = len(line)
    while i < n and line[i] != '"':
        char = line[i]
        if char == "\\" and i + 1 < n:
            i += 1
            char = line[i]
            hex_digits = line[i + 1 : i + 3]
            if char == "x" and len(hex_digits) == 2 and all(c in "0123456789abcdefABCDEF" for c in hex_digits):
                char = chr(int(hex_digits, 16))
                i += 2
            else:
                char = _ESCAPES.get(char, char)
        word.append(char)
        i += 1
    return "".join(word), i + 1


def _single_quoted(line: str, i: int) -> tuple[str, int]:
    word: list[str] = []
    n = len(line)
    while i < n and line[i] != "'":
        if line[i] == "\\" and i + 1 < n and line[i + 1] == "'":
            i += 1
        word.append(line[i])
        i += 1
    return "".join(word), i + 1


def split_args(line: str) -> list[str]:
    """A configuration line split like Redis's ``sdssplitargs`` (double quotes with escapes, single quotes)."""
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] == '"':
            word, i = _double_quoted(line, i + 1)
        elif line[i] == "'":
            word, i = _single_quoted(line, i + 1)
        else:
            start = i
            while i < n and not line[i].isspace():
                i += 1
            word = line[start:i]
        words.append(word)
    return words


def persisted_settings(text: str, name: str) -> dict[str, str]:
    """``auth-user``/``auth-pass`` of ``name`` as Sentinel persisted them in its configuration file."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        words = split_args(line)
        if (
            len(words) == 4
            and words[0].lower() == "sentinel"
            and words[1].lower() in PERSISTED_OPTIONS
            and words[2] == name
        ):
            found[words[1].lower()] = words[3]
    return found


@dataclass
class MonitorPlan:
    monitor: Address | None  # SENTINEL MONITOR needed (the name is not monitored yet)
    quorum: int
    settings: list[tuple[str, str]]  # SENTINEL SET pairs, only what differs
    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def changed(self) -> bool:
        return self.monitor is not None or bool(self.settings)

    def commands(self, name: str) -> list[list[str]]:
        commands: list[list[str]] = []
        if self.monitor is not None:
            commands.append(["SENTINEL", "MONITOR", name, self.monitor.host, str(self.monitor.port), str(self.quorum)])
        if self.settings:
            commands.append(["SENTINEL", "SET", name, *[w for pair in self.settings for w in pair]])
        return commands

    def shown_commands(self, name: str) -> list[str]:
        shown = []
        for command in self.commands(name):
            words = list(command)
            for i in range(3, len(words) - 1):
                if words[:2] == ["SENTINEL", "SET"] and words[i] in SECRET_OPTIONS and (i - 3) % 2 == 0:
                    words[i + 1] = MASK
            shown.append(" ".join(words))
        return shown


def _shown(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    return MASK if option in SECRET_OPTIONS else value


def plan_monitor(
    view: SentinelView,
    monitor_address: Address | None,
    quorum: int,
    desired: Mapping[str, Any],
    persisted: Mapping[str, str] | None,
) -> MonitorPlan:
    """What to send to one Sentinel so it monitors the name with ``quorum`` and ``desired`` SENTINEL SET options
    (``None`` values are left alone). ``persisted`` is what its configuration file holds for auth-user/auth-pass
    (``None`` when unknown: those are then set). The monitored ADDRESS is never changed here: after a failover it
    is Sentinel's to keep."""
    wanted = {k: str(v) for k, v in desired.items() if v is not None}
    wanted["quorum"] = str(quorum)
    before: dict[str, Any] = {"monitored": view.known}
    after: dict[str, Any] = {"monitored": True}
    settings: list[tuple[str, str]] = []
    if view.known:
        before["master"] = after["master"] = str(view.master)
        current = dict(view.settings)
        current.update(persisted or {})
        for option in (*READABLE_OPTIONS, *PERSISTED_OPTIONS):
            if option not in wanted:
                continue
            have = current.get(option)
            before[option] = _shown(option, have)
            after[option] = _shown(option, wanted[option])
            if option in PERSISTED_OPTIONS and persisted is None:
                settings.append((option, wanted[option]))
                after[option] = f"{after[option]} (file unreadable: set again)"
            elif have != wanted[option]:
                settings.append((option, wanted[option]))
                if option in SECRET_OPTIONS:
                    after[option] = f"{MASK} (changed)"
        return MonitorPlan(None, quorum, settings, before, after)
    if monitor_address is None:
        raise SentinelStateError("the Sentinel does not monitor the master and no address to monitor was found")
    after["master"] = str(monitor_address)
    for option in (*READABLE_OPTIONS, *PERSISTED_OPTIONS):
        if option in wanted:
            after[option] = _shown(option, wanted[option])
            if option != "quorum":
                settings.append((option, wanted[option]))
    return MonitorPlan(monitor_address, quorum, settings, before, after)


def apply_monitor(connect: Connect, sentinel: Address, name: str, plan: MonitorPlan) -> None:
    with connect(sentinel) as client:
        for command in plan.commands(name):
            client.execute(*command)


# -- a replica's link ---------------------------------------------------------------------------------


@dataclass
class ReplicaPlan:
    action: str  # "none", "replicaof"
    reason: str
    master: Address
    is_master: bool


def plan_replica(me: Address, master: Address, role: NodeRole) -> ReplicaPlan:
    """Point this node at ``master`` only when it does not already replicate from it. The advertised master itself
    is never touched (promotion and demotion are Sentinel's)."""
    if me == master:
        if role.role == "master":
            return ReplicaPlan("none", f"this node ({me}) is the master", master, True)
        return ReplicaPlan(
            "none",
            f"the Sentinels advertise this node ({me}) as master but it reports role {role.role}: left to Sentinel",
            master,
            True,
        )
    if role.role == "slave" and role.master == master:
        return ReplicaPlan("none", f"already replicates from {master} (link {role.link})", master, False)
    if role.role == "slave":
        reason = f"replicates from {role.master}, but the master is {master}"
    else:
        reason = f"is a {role.role}, but the master is {master}"
    return ReplicaPlan("replicaof", reason, master, False)


def apply_replicaof(connect: Connect, node: Address, master: Address) -> None:
    """REPLICAOF, then CONFIG REWRITE so a restart keeps it (what Sentinel itself does when it reconfigures)."""
    with connect(node) as client:
        client.execute("REPLICAOF", master.host, str(master.port))
        client.execute("CONFIG", "REWRITE")


def wait_link_up(
    connect: Connect,
    node: Address,
    master: Address,
    *,
    timeout: float,
    poll: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> NodeRole:
    """Until the node's link to ``master`` is established (bounded by ``timeout``); raises with the last state."""
    deadline = clock() + timeout
    last: NodeRole | str = "not asked"
    while True:
        try:
            role = node_role(connect, node)
            last = role
            if role.role == "slave" and role.master == master and role.link in LINK_UP:
                return role
        except RedisError as exc:
            last = str(exc)
        if clock() >= deadline:
            state = last.link if isinstance(last, NodeRole) else last
            raise SentinelStateError(
                f"{node} did not establish its link to {master} within {timeout:g}s (last state: {state}); check "
                "masteruser/masterauth, the replication user's ACL and that the master is reachable"
            )
        sleep(poll)


# -- a planned failover ---------------------------------------------------------------------------------


def healthy_replicas(reply: Any, address: str = "") -> list[Address]:
    """Replicas from SENTINEL REPLICAS that Sentinel could promote (up, link to the master ok)."""
    healthy = []
    for entry in reply or []:
        info = fields(entry, address)
        flags = set(info.get("flags", "").split(","))
        if flags & {"s_down", "o_down", "disconnected"}:
            continue
        if info.get("master-link-status") != "ok":
            continue
        if info.get("slave-priority", info.get("replica-priority", "100")) == "0":
            continue
        healthy.append(Address(info["ip"], int(info["port"])))
    return healthy


@dataclass
class Timeline:
    clock: Callable[[], float]
    start: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.start = self.clock()

    def mark(self, event: str, **extra: Any) -> None:
        self.events.append({"event": event, "elapsed": round(self.clock() - self.start, 3), **extra})

    @property
    def elapsed(self) -> float:
        return round(self.clock() - self.start, 3)


def _advertised(connect_sentinel: Connect, sentinels: Sequence[Address], name: str) -> dict[Address, Address | str]:
    """GET-MASTER-ADDR-BY-NAME on every Sentinel: its master, or why there is none."""
    answers: dict[Address, Address | str] = {}
    for sentinel in sentinels:
        try:
            with connect_sentinel(sentinel) as client:
                reply = client.execute("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            answers[sentinel] = Address(str(reply[0]), int(reply[1])) if isinstance(reply, list) else "unknown"
        except RedisError as exc:
            answers[sentinel] = f"no answer ({exc})"
    return answers


@dataclass
class Wait:
    """A bounded wait: the timeline, its deadline, the poll interval and the sleep function."""

    timeline: Timeline
    deadline: float
    poll: float
    sleep: Callable[[float], None] = time.sleep

    def expired(self) -> bool:
        return self.timeline.clock() >= self.deadline


def wait_agreement(
    connect_sentinel: Connect, sentinels: Sequence[Address], name: str, old: Address, wait: Wait
) -> Address:
    """Until every Sentinel that answers - at least a majority - advertises the same master, other than ``old``."""
    first_switch = False
    while True:
        answers = _advertised(connect_sentinel, sentinels, name)
        seen = [a for a in answers.values() if isinstance(a, Address)]
        switched = [a for a in seen if a != old]
        if switched and not first_switch:
            first_switch = True
            wait.timeline.mark("first Sentinel advertises a new master", master=str(switched[0]))
        if len(seen) * 2 > len(sentinels) and len(switched) == len(seen) and len(set(seen)) == 1:
            shown = {str(k): str(v) for k, v in answers.items()}
            wait.timeline.mark("every answering Sentinel advertises the new master", master=str(seen[0]), answers=shown)
            return seen[0]
        if wait.expired():
            shown = {str(k): str(v) for k, v in answers.items()}
            raise SentinelStateError(
                f"the Sentinels did not agree on a new master within {wait.timeline.elapsed:g}s; answers: {shown}"
            )
        wait.sleep(wait.poll)


def wait_follows(connect_node: Connect, old: Address, new: Address, wait: Wait) -> None:
    """Until ``old`` replicates from ``new`` with its link connected."""
    last = "not asked"
    while True:
        try:
            role = node_role(connect_node, old)
            last = f"{role.role} of {role.master} (link {role.link})" if role.master else role.role
            if role.role == "slave" and role.master == new and role.link == "connected":
                wait.timeline.mark("the old master replicates from the new one", node=str(old))
                return
        except RedisError as exc:
            last = f"no answer ({exc})"
        if wait.expired():
            raise SentinelStateError(
                f"the Sentinels agree on {new}, but the old master {old} does not replicate from it yet "
                f"after {wait.timeline.elapsed:g}s (last: {last})"
            )
        wait.sleep(wait.poll)


def failover(
    connect_sentinel: Connect,
    connect_node: Connect,
    sentinels: Sequence[Address],
    name: str,
    *,
    from_spec: HostSpec | None,
    check_mode: bool,
    timeout: float,
    poll: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """A planned SENTINEL FAILOVER away from ``from_spec`` (only when it is the current master: a re-run after the
    failover is a no-op), then a bounded wait until the Sentinels agree and the old master follows."""
    views = ask_sentinels(connect_sentinel, sentinels, name)
    choice = choose_master(views, name)
    result: dict[str, Any] = {"changed": False, "sentinels": [v.as_dict() for v in views]}
    if choice.source != "sentinel" or choice.master is None:
        raise SentinelStateError(f"no Sentinel monitors {name!r}: nothing to fail over (converge the role first)")
    old = choice.master
    result["master_before"] = str(old)
    if choice.failover_in_progress:
        raise SentinelStateError(f"a failover of {name!r} is already in progress; wait for it, then re-run")
    if not choice.agreed:
        raise SentinelStateError(f"the Sentinels do not agree on the master ({choice.note}): not starting a failover")
    if from_spec is not None and not from_spec.matches(old):
        result["master"] = str(old)
        result["msg"] = f"the master is {old}, not {from_spec}: no failover needed"
        return result
    asker = next(v.sentinel for v in views if v.answered)
    with connect_sentinel(asker) as client:
        candidates = healthy_replicas(client.execute("SENTINEL", "REPLICAS", name), str(asker))
    result["candidates"] = [str(c) for c in candidates]
    if not candidates:
        raise SentinelStateError(
            f"no replica of {old} is healthy enough to promote (SENTINEL REPLICAS on {asker}): not starting a failover"
        )
    result["changed"] = True
    if check_mode:
        result["master"] = str(old)
        result["msg"] = f"would fail {name!r} over from {old} to one of {', '.join(map(str, candidates))}"
        return result
    timeline = Timeline(clock)
    with connect_sentinel(asker) as client:
        client.execute("SENTINEL", "FAILOVER", name)
    timeline.mark("SENTINEL FAILOVER sent", sentinel=str(asker))
    wait = Wait(timeline, clock() + timeout, poll, sleep)
    new = wait_agreement(connect_sentinel, sentinels, name, old, wait)
    wait_follows(connect_node, old, new, wait)
    result.update(
        master=str(new),
        events=timeline.events,
        elapsed=timeline.elapsed,
        msg=f"{name!r} failed over from {old} to {new} in {timeline.elapsed:g}s",
    )
    return result
