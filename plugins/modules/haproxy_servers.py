#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: haproxy_servers
short_description: Set the weights and states of many HAProxy servers in one batch
version_added: 0.1.0
description:
  - Sets the weight and the admin state (V(ready), V(drain), V(maint)) of any number of servers of any number of
    backends of ONE HAProxy, through its runtime API socket, in one batch (one connection per 8 kB of commands).
  - Compare-and-set. The module reads C(show servers state), computes the minimal change set, checks every backend
    and server exists before sending anything, sends the commands, then reads the state back and verifies it.
    A second run with the same arguments changes nothing and reports RV(ignore:changed=false).
  - O(split) turns a canary percentage into weights for the stable and canary servers of each backend (the
    largest weights HAProxy allows, so the split is as exact as possible); O(servers) sets weights and states
    directly. Both may be given; a server's weight may come from only one of them.
  - After applying, the runtime state is saved to O(state_file), so a reload of HAProxy
    (C(load-server-state-from-file)) keeps it.
  - Runs on the load balancer (it needs the local admin socket).
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - strata.deploy.traffic.haproxy
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the state and predicts the changes; sends no command and writes no file.
  diff_mode:
    support: full
    details: A table of weight and state per backend and server, before and after.
  platform:
    platforms: posix
options:
  servers:
    description:
      - Desired settings, as C(backend -> server -> {weight, state}). Either key may be left out to keep the
        current value.
      - C(weight) is an integer from 0 to 256; C(state) is one of V(ready), V(drain) (no new connections, current
        ones finish) or V(maint) (out of service).
      - A backend or server HAProxy does not know fails the task before anything is changed.
    type: dict
  split:
    description:
      - Traffic split between stable and canary servers, turned into weights with the HAProxy weight scale.
      - Only weights are set; use O(servers) in the same task to set states (for example V(ready) for a canary
        that was in V(maint)).
    type: dict
    suboptions:
      percent:
        description:
          - Share of the traffic for the canary servers, from 0 to 100 (decimals allowed).
        type: float
        required: true
      backends:
        description:
          - For each backend, C(stable) and C(canary), the lists of its stable and canary server names. Each backend
            is split at O(split.percent).
        type: dict
        required: true
  wait_drained:
    description:
      - After applying, wait until every server of the task that takes no new connections (state V(drain) or
        V(maint), or weight 0) has no current session, for at most O(drain_timeout) seconds.
      - If sessions remain at the deadline, the task fails (the new weights and states stay applied) and lists them.
    type: bool
    default: false
  drain_timeout:
    description:
      - Seconds to wait for the sessions to end with O(wait_drained=true).
    type: float
    default: 60
  state_file:
    description:
      - File to save C(show servers state) to after a change (atomically), the C(server-state-file) of HAProxy's
        C(global) section, so that a reload keeps the runtime weights and states.
      - The file is also rewritten (and the task reports a change) when it does not show the desired state of the
        servers of the task, for example after an earlier run could not write it.
      - Set to an empty string to not write any file.
    type: path
    default: /var/lib/haproxy/server-state
notes:
  - The HAProxy socket must be at C(level admin). Run the task as root or as a member of the socket's group.
  - HAProxy accepts or rejects each command on its own. If it rejects one, the others of the batch are applied; the
    task fails and returns what HAProxy holds now in RV(read_back).
seealso:
  - module: strata.deploy.traffic_info
  - module: strata.deploy.nginx_upstream
"""

EXAMPLES = r"""
- name: Send 10% of the traffic of backend app to the canary app4
  strata.deploy.haproxy_servers:
    split:
      percent: 10
      backends:
        app:
          stable: [app1, app2, app3]
          canary: [app4]
    servers:
      app:
        app4: {state: ready}

- name: Drain app2 and api07, then wait (at most 2 minutes) for their sessions to end
  strata.deploy.haproxy_servers:
    servers:
      app:
        app2: {state: drain}
      api:
        api07: {state: drain}
    wait_drained: true
    drain_timeout: 120

- name: Put app2 back with weight 100
  strata.deploy.haproxy_servers:
    socket: /run/haproxy/admin.sock
    servers:
      app:
        app2: {weight: 100, state: ready}
"""

RETURN = r"""
changes:
  description: The servers whose weight or state changed (or would change in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - {backend: app, server: app4, before: {weight: 0, state: maint}, after: {weight: 28, state: ready}}
commands:
  description: The runtime API commands sent (or that would be sent in check mode).
  returned: always
  type: list
  elements: str
  sample: ["set server app/app4 weight 28", "set server app/app4 state ready"]
read_back:
  description:
    - C(backend -> server -> {weight, state}) for every server of the backends of the task, read back from HAProxy
      after the change (the state read before, when nothing was sent).
  returned: always
  type: dict
  sample: {app: {app1: {weight: 256, state: ready}, app4: {weight: 28, state: ready}}}
round_trips:
  description: Connections used to send the commands (0 when nothing was sent).
  returned: always
  type: int
  sample: 1
elapsed:
  description: Seconds spent sending the commands and reading HAProxy's answers.
  returned: always
  type: float
  sample: 0.0021
state_file:
  description: The server state file written by this run, or V(null) when none was written.
  returned: always
  type: str
  sample: /var/lib/haproxy/server-state
sessions_left:
  description: With O(wait_drained=true), C(backend/server -> current sessions) still open (empty when drained).
  returned: when O(wait_drained=true) and not in check mode
  type: dict
  sample: {}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strata.deploy.plugins.module_utils._haproxy.client import (
    HAProxyClient,
    commands_for,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import HAPROXY


def argument_spec() -> dict:
    spec = glue.haproxy_connection_spec()
    spec.update(
        servers={"type": "dict"},
        split={
            "type": "dict",
            "options": {
                "percent": {"type": "float", "required": True},
                "backends": {"type": "dict", "required": True},
            },
        },
        wait_drained={"type": "bool", "default": False},
        drain_timeout={"type": "float", "default": 60.0},
        state_file={"type": "path", "default": glue.DEFAULT_STATE_FILE},
    )
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(), supports_check_mode=True, required_one_of=[("servers", "split")]
    )
    p = module.params
    where = f"HAProxy runtime API socket {p['socket']}"
    state_file = p["state_file"] or None

    with glue.failing(module, f"checking the desired state against {where}"):
        client = HAProxyClient(p["socket"], timeout=p["timeout"])
        desired = glue.haproxy_desired(p["servers"], p["split"], HAPROXY)
        current, changes, rows = client.plan(desired)
    pools = list(desired)
    save = bool(state_file) and (bool(changes) or glue.state_file_stale(state_file, glue.rows_after(rows)))
    result = {
        "changed": bool(changes) or save,
        "changes": glue.changes_result(changes),
        "commands": commands_for(changes),
        "read_back": glue.state_result(current, pools),
        "round_trips": 0,
        "elapsed": 0.0,
        "state_file": None,
    }
    if module._diff:
        result["diff"] = glue.diff_result(rows, where)
    if module.check_mode:
        module.exit_json(**result)

    if changes:
        tried = f"applying {len(changes)} change(s) through {where}"
        with glue.failing(module, tried, glue.haproxy_left(client.current_state, pools)):
            applied = client.apply(changes)
        result.update(
            read_back=glue.state_result(applied.read_back, pools),
            round_trips=applied.round_trips,
            elapsed=round(applied.elapsed, 6),
        )
    if save:
        unsaved = (
            "the weights and states are applied, but a reload of HAProxy would revert them until the file is written"
        )
        with glue.failing(module, f"writing the server state file {state_file}", unsaved):
            client.save_state(state_file)
        result["state_file"] = state_file

    if p["wait_drained"]:
        targets = glue.out_of_service(rows)
        tried = f"waiting up to {p['drain_timeout']:g}s for {len(targets)} server(s) to drain through {where}"
        with glue.failing(module, tried, "the weights and states are applied"):
            busy_servers = client.wait_drained(targets, p["drain_timeout"])
        result["sessions_left"] = {f"{b}/{s}": count for (b, s), count in busy_servers.items()}
        if busy_servers:
            busy = ", ".join(f"{name} ({count})" for name, count in result["sessions_left"].items())
            module.fail_json(
                msg=f"{tried} failed: sessions still open on {busy}; the weights and states are applied",
                **result,
            )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
