#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_sentinel
short_description: Drive Redis Sentinel by commands - monitor, point replicas, read status, planned failover
version_added: 0.1.0
description:
  - Everything here follows one rule, so that a re-run after a failover never reverts it - the master is whoever
    the Sentinels advertise. The configured primary (O(bootstrap_master)) is used only when a majority of
    O(sentinels) answer and none of them monitors O(name) yet (a new deployment); even then, if that host already
    replicates from another node, that node is taken. With fewer than a majority answering and none knowing the
    master, the module fails rather than guess.
  - Sentinels that disagree (during a failover) are settled by the highest C(config-epoch), then the most common
    answer.
  - O(mode=monitor) - the Sentinel at O(sentinel) monitors O(name) (C(SENTINEL MONITOR) only when it does not yet,
    at the address the other Sentinels advertise, or the bootstrap one), and C(SENTINEL SET) sends only the options
    that differ. Options C(SENTINEL MASTER) does not show (C(auth-user), C(auth-pass)) are compared with what the
    Sentinel persisted in O(config_file). The monitored address itself is never changed.
  - O(mode=replica) - the Redis node at O(node) (known to the Sentinels as O(node_address)) replicates from the
    current master; C(REPLICAOF) and C(CONFIG REWRITE) are sent only when it does not already. The master itself
    is never touched. Then waits (at most O(wait_timeout) seconds) until the replication link is up.
  - O(mode=status) - reads only - the master, whether every Sentinel agrees, each Sentinel's view, and with
    O(node_address) given the role of the node at O(node).
  - O(mode=failover) - a planned C(SENTINEL FAILOVER) away from O(failover_from), only while that host is the
    master (so a re-run is a no-op), only when every Sentinel agrees and a healthy replica exists; then waits (at
    most O(wait_timeout) seconds, polling every O(poll_interval)) until every Sentinel advertises the new master
    and the old master replicates from it. Returns the timeline.
  - Talks RESP2 over a socket (standard library only, no redis-py on the host) with a timeout on every operation.
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the live state and reports the commands it would send, sending none.
  diff_mode:
    support: full
    details: O(mode=monitor) and O(mode=replica) return what changes; secrets are masked.
  platform:
    platforms: posix
options:
  mode:
    description:
      - What to do, see the description.
    type: str
    choices: [monitor, replica, status, failover]
    default: monitor
  name:
    description:
      - The master name the Sentinels monitor.
    type: str
    default: mymaster
  sentinel:
    description:
      - C(host:port) of the Sentinel that O(mode=monitor) configures (usually the one on this host).
    type: str
    default: 127.0.0.1:26379
  sentinels:
    description:
      - C(host:port) of every Sentinel of the deployment; they are asked who the master is. Empty means only
        O(sentinel).
    type: list
    elements: str
    default: []
  node:
    description:
      - C(host:port) where the module reaches the Redis node that O(mode=replica) configures (usually on
        loopback).
    type: str
    default: 127.0.0.1:6379
  node_address:
    description:
      - C(host:port) under which the Sentinels and the other nodes know this node (its announced address), to
        tell whether it is the master. Required with O(mode=replica).
    type: str
  bootstrap_master:
    description:
      - C(host:port) of the configured primary, used only when no Sentinel monitors O(name) yet.
    type: str
  login_user:
    description:
      - ACL user for the Sentinels and the Redis nodes (an administrator; empty for the C(default) user).
    type: str
    default: ""
  login_password:
    description:
      - Its password. Empty sends no AUTH.
    type: str
    default: ""
  quorum:
    description:
      - Sentinels that must agree that the master is down (O(mode=monitor)). Required with O(mode=monitor).
    type: int
  down_after_milliseconds:
    description:
      - C(down-after-milliseconds) of the monitored master. Unset leaves it alone.
    type: int
  failover_timeout:
    description:
      - C(failover-timeout) in milliseconds. Unset leaves it alone.
    type: int
  parallel_syncs:
    description:
      - C(parallel-syncs). Unset leaves it alone.
    type: int
  auth_user:
    description:
      - C(auth-user) - the ACL user Sentinel logs in to the Redis nodes with. Unset leaves it alone.
    type: str
  auth_pass:
    description:
      - C(auth-pass) - its password. Unset leaves it alone.
    type: str
  sentinel_user:
    description:
      - O(mode=monitor) - C(sentinel-user), the ACL user this Sentinel logs in to the OTHER Sentinels with
        (C(SENTINEL CONFIG SET) when it differs). Unset leaves it alone.
    type: str
  sentinel_pass:
    description:
      - O(mode=monitor) - C(sentinel-pass), its password. Unset leaves it alone.
    type: str
  config_file:
    description:
      - The Sentinel's configuration file, where it persists C(auth-user)/C(auth-pass) (which C(SENTINEL MASTER)
        does not show). When it cannot be read they are sent again (and a warning says so).
    type: path
    default: /etc/redis/sentinel.conf
  failover_from:
    description:
      - O(mode=failover) - fail over only while this host (C(host) or C(host:port), as the Sentinels advertise it)
        is the master. Required with O(mode=failover) unless O(force=true).
    type: str
  force:
    description:
      - O(mode=failover) without O(failover_from) - fail over away from whichever node is the master. Not
        idempotent, each run fails over again.
    type: bool
    default: false
  wait_timeout:
    description:
      - Longest wait in seconds - for the new master to be agreed on (O(mode=failover)), for the replication link
        (O(mode=replica), 0 skips that wait), and for a failover in progress to end before acting.
    type: float
    default: 60
  poll_interval:
    description:
      - Seconds between two polls while waiting.
    type: float
    default: 0.1
  connect_timeout:
    description:
      - Timeout in seconds of every connect, send and receive.
    type: float
    default: 3
  tls:
    description:
      - Speak TLS to the Redis nodes (O(node), O(bootstrap_master) and the masters the Sentinels advertise, whose
        port is then their TLS port).
    type: bool
    default: false
  sentinel_tls:
    description:
      - Speak TLS to the Sentinels.
    type: bool
    default: false
  tls_ca_file:
    description:
      - CA certificate that signed the servers' certificates (with O(tls=true)).
    type: path
  tls_cert_file:
    description:
      - Client certificate, when the servers require one (C(tls-auth-clients yes)).
    type: path
  tls_key_file:
    description:
      - Key of O(tls_cert_file).
    type: path
notes:
  - Uses the RESP2 protocol over TCP; needs no Python library on the host.
seealso:
  - name: Redis Sentinel
    description: How Sentinel elects, announces and persists the master.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
"""

EXAMPLES = r"""
- name: This host's Sentinel monitors mymaster (at the address the other Sentinels know, or the primary)
  strata.deploy.redis_sentinel:
    mode: monitor
    name: mymaster
    sentinels: [10.0.0.11:26379, 10.0.0.12:26379, 10.0.0.13:26379]
    bootstrap_master: 10.0.0.11:6379
    quorum: 2
    down_after_milliseconds: 5000
    failover_timeout: 30000
    parallel_syncs: 1
    auth_user: strata-sentinel
    auth_pass: "{{ redis_sentinel_password }}"
    login_user: strata-admin
    login_password: "{{ redis_admin_password }}"
    config_file: /etc/redis/strata-sentinel.conf

- name: This node replicates from the master the Sentinels advertise
  strata.deploy.redis_sentinel:
    mode: replica
    sentinels: [10.0.0.11:26379, 10.0.0.12:26379, 10.0.0.13:26379]
    node: 127.0.0.1:6379
    node_address: 10.0.0.12:6379
    bootstrap_master: 10.0.0.11:6379
    login_user: strata-admin
    login_password: "{{ redis_admin_password }}"

- name: Fail over away from 10.0.0.11 (nothing happens when it is no longer the master)
  strata.deploy.redis_sentinel:
    mode: failover
    sentinels: [10.0.0.11:26379, 10.0.0.12:26379, 10.0.0.13:26379]
    failover_from: 10.0.0.11
    wait_timeout: 60
    login_user: strata-admin
    login_password: "{{ redis_admin_password }}"
  register: failover

- name: Who is the master
  strata.deploy.redis_sentinel:
    mode: status
    sentinels: [10.0.0.11:26379, 10.0.0.12:26379, 10.0.0.13:26379]
    login_user: strata-admin
    login_password: "{{ redis_admin_password }}"
  register: redis_status
"""

RETURN = r"""
master:
  description: The master (C(host:port)) after the task, as the Sentinels advertise it (or the bootstrap one).
  returned: always
  type: str
  sample: 10.0.0.12:6379
master_host:
  description: Host part of RV(master).
  returned: always
  type: str
  sample: 10.0.0.12
master_port:
  description: Port part of RV(master).
  returned: always
  type: int
  sample: 6379
source:
  description: C(sentinel) when the Sentinels named the master, C(bootstrap) when the configured primary was used.
  returned: when the master was looked up
  type: str
  sample: sentinel
agreed:
  description: Every Sentinel answered, monitors the name and names the same master.
  returned: when the master was looked up
  type: bool
  sample: true
sentinels:
  description: Each Sentinel's view - address, whether it answered and monitors the name, its master, epoch, flags.
  returned: when the master was looked up
  type: list
  elements: dict
  sample:
    - {sentinel: "10.0.0.11:26379", answered: true, monitors: true, master: "10.0.0.12:6379", config_epoch: 3,
       flags: [master], error: null}
role:
  description: The node's replication role after the task (O(mode=replica), or O(mode=status) with O(node)).
  returned: when a node was asked
  type: dict
  sample: {role: replica, master: "10.0.0.12:6379", link: connected, offset: 12345, replicas: []}
commands:
  description: Commands sent (or, in check mode, that would be sent); secrets masked.
  returned: always
  type: list
  elements: str
  sample: ["SENTINEL SET mymaster down-after-milliseconds 5000"]
events:
  description: O(mode=failover) timeline - each step with the seconds since C(SENTINEL FAILOVER) was sent.
  returned: after a failover
  type: list
  elements: dict
  sample:
    - {event: SENTINEL FAILOVER sent, elapsed: 0.0, sentinel: "10.0.0.11:26379"}
    - {event: every answering Sentinel advertises the new master, elapsed: 1.9, master: "10.0.0.12:6379"}
elapsed:
  description: O(mode=failover) - seconds from C(SENTINEL FAILOVER) to the old master replicating from the new one.
  returned: after a failover
  type: float
  sample: 3.4
master_before:
  description: O(mode=failover) - the master before the task.
  returned: in mode failover
  type: str
  sample: 10.0.0.11:6379
msg:
  description: What happened, in one sentence.
  returned: always
  type: str
  sample: mymaster failed over from 10.0.0.11:6379 to 10.0.0.12:6379 in 3.4s
"""

import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strata.deploy.plugins.module_utils._redis.client import (
    RedisClient,
    RedisError,
    TLSOptions,
)
from ansible_collections.strata.deploy.plugins.module_utils._redis.sentinel import (
    MASK,
    Address,
    HostSpec,
    MasterChoice,
    SentinelStateError,
    apply_monitor,
    apply_replicaof,
    ask_sentinel,
    current_master,
    failover,
    node_role,
    persisted_settings,
    plan_monitor,
    plan_replica,
    wait_link_up,
)

SECRET_GLOBALS = frozenset({"sentinel-pass"})
SENTINEL_OPTIONS = {
    "down_after_milliseconds": "down-after-milliseconds",
    "failover_timeout": "failover-timeout",
    "parallel_syncs": "parallel-syncs",
    "auth_user": "auth-user",
    "auth_pass": "auth-pass",
}


def argument_spec() -> dict[str, Any]:
    return {
        "mode": {"type": "str", "choices": ["monitor", "replica", "status", "failover"], "default": "monitor"},
        "name": {"type": "str", "default": "mymaster"},
        "sentinel": {"type": "str", "default": "127.0.0.1:26379"},
        "sentinels": {"type": "list", "elements": "str", "default": []},
        "node": {"type": "str", "default": "127.0.0.1:6379"},
        "node_address": {"type": "str"},
        "bootstrap_master": {"type": "str"},
        "login_user": {"type": "str", "default": ""},
        "login_password": {"type": "str", "default": "", "no_log": True},
        "quorum": {"type": "int"},
        "down_after_milliseconds": {"type": "int"},
        "failover_timeout": {"type": "int"},
        "parallel_syncs": {"type": "int"},
        "auth_user": {"type": "str"},
        "auth_pass": {"type": "str", "no_log": True},
        "sentinel_user": {"type": "str"},
        "sentinel_pass": {"type": "str", "no_log": True},
        "config_file": {"type": "path", "default": "/etc/redis/sentinel.conf"},
        "failover_from": {"type": "str"},
        "force": {"type": "bool", "default": False},
        "wait_timeout": {"type": "float", "default": 60},
        "poll_interval": {"type": "float", "default": 0.1},
        "connect_timeout": {"type": "float", "default": 3},
        "tls": {"type": "bool", "default": False},
        "sentinel_tls": {"type": "bool", "default": False},
        "tls_ca_file": {"type": "path"},
        "tls_cert_file": {"type": "path"},
        "tls_key_file": {"type": "path"},
    }


class Runner:
    """The module's parameters turned into connections and addresses."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        p = module.params
        self.p = p
        self.name: str = p["name"]
        tls = TLSOptions(ca_file=p["tls_ca_file"], cert_file=p["tls_cert_file"], key_file=p["tls_key_file"])
        self.node_tls = tls if p["tls"] else None
        self.sentinel_tls = tls if p["sentinel_tls"] else None
        self.sentinel = self.address("sentinel", p["sentinel"])
        self.sentinels = [self.address("sentinels", s) for s in p["sentinels"]] or [self.sentinel]
        self.node = self.address("node", p["node"])
        self.bootstrap = self.address("bootstrap_master", p["bootstrap_master"]) if p["bootstrap_master"] else None
        self.commands: list[str] = []

    def address(self, option: str, text: str) -> Address:
        try:
            return Address.parse(text)
        except ValueError as exc:
            self.module.fail_json(msg=f"{option}: {exc}")
            raise  # not reached: fail_json exits

    def _client(self, address: Address, tls: TLSOptions | None) -> RedisClient:
        return RedisClient(
            address.host,
            address.port,
            username=self.p["login_user"] or None,
            password=self.p["login_password"] or None,
            timeout=self.p["connect_timeout"],
            tls=tls,
        )

    def connect_sentinel(self, address: Address) -> RedisClient:
        return self._client(address, self.sentinel_tls)

    def connect_node(self, address: Address) -> RedisClient:
        return self._client(address, self.node_tls)

    def master(self) -> MasterChoice:
        """The current master; waits (bounded) while a failover is in progress."""
        deadline = time.monotonic() + self.p["wait_timeout"]
        while True:
            choice = current_master(self.connect_sentinel, self.connect_node, self.sentinels, self.name, self.bootstrap)
            if not choice.failover_in_progress:
                return choice
            if time.monotonic() >= deadline:
                raise SentinelStateError(
                    f"a failover of {self.name!r} is still in progress after {self.p['wait_timeout']:g}s: re-run later"
                )
            time.sleep(max(self.p["poll_interval"], 0.05))

    def master_result(self, choice: MasterChoice) -> dict[str, Any]:
        master = choice.master
        return {
            "master": str(master) if master else None,
            "master_host": master.host if master else None,
            "master_port": master.port if master else None,
            "source": choice.source,
            "agreed": choice.agreed,
            "sentinels": [v.as_dict() for v in choice.views],
        }

    # -- modes ----------------------------------------------------------------------------------------

    def monitor(self) -> dict[str, Any]:
        p = self.p
        if p["quorum"] is None or p["quorum"] < 1:
            self.module.fail_json(msg="quorum: a positive number is required with mode=monitor")
        local = ask_sentinel(self.connect_sentinel, self.sentinel, self.name)
        if not local.answered:
            raise SentinelStateError(f"the Sentinel to configure cannot be asked: {local.error}")
        choice: MasterChoice | None = None
        monitor_address = None
        if not local.known:
            choice = self.master()
            monitor_address = choice.master
        desired = {option: p[param] for param, option in SENTINEL_OPTIONS.items()}
        persisted: dict[str, str] | None = None
        if local.known and (p["auth_user"] is not None or p["auth_pass"] is not None):
            persisted = self.read_persisted()
        plan = plan_monitor(local, monitor_address, p["quorum"], desired, persisted)
        globals_plan = self.sentinel_globals()
        self.commands = plan.shown_commands(self.name) + [
            f"SENTINEL CONFIG SET {k} {MASK if k in SECRET_GLOBALS else v}" for k, v in globals_plan
        ]
        if not self.module.check_mode:
            if plan.changed:
                apply_monitor(self.connect_sentinel, self.sentinel, self.name, plan)
            if globals_plan:
                with self.connect_sentinel(self.sentinel) as client:
                    for key, value in globals_plan:
                        client.execute("SENTINEL", "CONFIG", "SET", key, value)
        changed = plan.changed or bool(globals_plan)
        master = monitor_address or local.master
        for key, value in globals_plan:
            plan.after[key] = f"{MASK} (changed)" if key in SECRET_GLOBALS else value
        result: dict[str, Any] = {
            "changed": changed,
            "master": str(master),
            "master_host": master.host if master else None,
            "master_port": master.port if master else None,
            "diff": {"before": plan.before, "after": plan.after},
        }
        if choice is not None:
            result.update(source=choice.source, agreed=choice.agreed, sentinels=[v.as_dict() for v in choice.views])
        verb = "would send" if self.module.check_mode else "sent"
        result["msg"] = (
            f"{self.sentinel} monitors {self.name!r} ({master}); {verb} {len(self.commands)} command(s)"
            if changed
            else f"{self.sentinel} monitors {self.name!r} ({master}) as configured"
        )
        return result

    def sentinel_globals(self) -> list[tuple[str, str]]:
        """SENTINEL CONFIG SET pairs for sentinel-user/sentinel-pass that differ from the running values."""
        wanted = {k: self.p[p] for p, k in (("sentinel_user", "sentinel-user"), ("sentinel_pass", "sentinel-pass"))}
        wanted = {k: v for k, v in wanted.items() if v is not None}
        if not wanted:
            return []
        with self.connect_sentinel(self.sentinel) as client:
            running = {}
            for key in wanted:
                reply = client.execute("SENTINEL", "CONFIG", "GET", key)
                running[key] = str(reply[1]) if isinstance(reply, list) and len(reply) == 2 else None
        return [(k, v) for k, v in wanted.items() if running.get(k) != v]

    def read_persisted(self) -> dict[str, str] | None:
        path = self.p["config_file"]
        # Sentinel rewrites this file by creating a new one and renaming it over the old: a read that meets the
        # gap (or a Sentinel that has not written it yet) is tried again for up to a second.
        for attempt in range(5):
            try:
                with open(path, encoding="utf-8") as handle:
                    return persisted_settings(handle.read(), self.name)
            except FileNotFoundError as exc:
                if attempt == 4:
                    self.module.warn(f"cannot read {path} ({exc.strerror}): auth-user/auth-pass are sent again")
                    return None
                time.sleep(0.2)
            except OSError as exc:
                self.module.warn(f"cannot read {path} ({exc.strerror}): auth-user/auth-pass are sent again")
                return None
        return None

    def replica(self) -> dict[str, Any]:
        p = self.p
        if not p["node_address"]:
            self.module.fail_json(msg="node_address: required with mode=replica (host:port the Sentinels know)")
        me = self.address("node_address", p["node_address"])
        choice = self.master()
        if choice.master is None:
            raise SentinelStateError(f"no master found for {self.name!r}")
        if choice.source == "sentinel" and not choice.agreed:
            self.module.warn(f"{choice.note}; following {choice.master} (highest config epoch)")
        before = node_role(self.connect_node, self.node)
        plan = plan_replica(me, choice.master, before)
        result = self.master_result(choice)
        result["msg"] = plan.reason
        if plan.action == "replicaof":
            self.commands = [f"REPLICAOF {choice.master.host} {choice.master.port}", "CONFIG REWRITE"]
            result["changed"] = True
            if not self.module.check_mode:
                apply_replicaof(self.connect_node, self.node, choice.master)
                result["msg"] = f"now replicates from {choice.master} (it {plan.reason})"
        else:
            result["changed"] = False
        after = before
        if not self.module.check_mode and not plan.is_master and p["wait_timeout"] > 0:
            after = wait_link_up(
                self.connect_node, self.node, choice.master, timeout=p["wait_timeout"], poll=p["poll_interval"]
            )
        elif plan.action == "replicaof":
            after = type(before)("slave", choice.master, "connect")
        result["role"] = after.as_dict()
        result["diff"] = {"before": before.as_dict(), "after": after.as_dict()}
        return result

    def status(self) -> dict[str, Any]:
        choice = current_master(self.connect_sentinel, self.connect_node, self.sentinels, self.name, self.bootstrap)
        result = self.master_result(choice)
        result["changed"] = False
        result["note"] = choice.note
        if self.p["node_address"]:
            try:
                result["role"] = node_role(self.connect_node, self.node).as_dict()
            except RedisError as exc:
                result["role"] = {"role": "unreachable", "error": str(exc)}
        agreed = "every Sentinel agrees" if choice.agreed else (choice.note or "the Sentinels do not all agree")
        result["msg"] = f"{self.name!r} master is {choice.master} ({choice.source}); {agreed}"
        return result

    def failover(self) -> dict[str, Any]:
        p = self.p
        if not p["failover_from"] and not p["force"]:
            self.module.fail_json(
                msg="failover_from: name the current master to fail over from (a re-run is then a no-op), "
                "or set force=true to fail over from whichever node is the master"
            )
        spec = HostSpec.parse(p["failover_from"]) if p["failover_from"] else None
        result = failover(
            self.connect_sentinel,
            self.connect_node,
            self.sentinels,
            self.name,
            from_spec=spec,
            check_mode=self.module.check_mode,
            timeout=p["wait_timeout"],
            poll=p["poll_interval"],
        )
        master = Address.parse(result["master"])
        result.update(master_host=master.host, master_port=master.port)
        if result["changed"]:
            self.commands = [f"SENTINEL FAILOVER {self.name}"]
        return result


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("mode", "replica", ("node_address",)), ("mode", "monitor", ("quorum",))],
        required_together=[("tls_cert_file", "tls_key_file")],
    )
    runner = Runner(module)
    mode = module.params["mode"]
    if mode == "monitor" and module.params["config_file"] and not os.path.isabs(module.params["config_file"]):
        module.fail_json(msg="config_file: an absolute path is required")
    try:
        result = getattr(runner, mode)()
    except SentinelStateError as exc:
        module.fail_json(msg=str(exc), commands=runner.commands)
    except RedisError as exc:
        sent = f" (commands sent before: {runner.commands})" if runner.commands and not module.check_mode else ""
        module.fail_json(msg=f"mode={mode}: {exc}{sent}", commands=runner.commands)
    result["commands"] = runner.commands
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
