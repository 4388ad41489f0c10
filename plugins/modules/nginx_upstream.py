#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nginx_upstream
short_description: Set the weights and states of the servers of an nginx upstream, with one test and one reload
version_added: 0.1.0
description:
  - Sets the weight and state of any number of servers of one C(upstream) block in an nginx include file.
    nginx OSS has no runtime API, so the file is the source of truth. It is read, the minimal change set is computed,
    the whole file is rewritten atomically, the whole configuration is tested once (O(test_command)) and nginx is
    reloaded gracefully once (O(reload_command)), whatever the number of servers changed. The file is then read
    back and verified.
  - If the test fails, the previous file is put back, nginx is not reloaded and the task fails with nginx's output.
  - nginx has no weight 0 and no drain state. Weight 0 is written as C(down) and read back as weight 0; V(drain) and
    V(maint) are written as C(down) with the weight kept (a graceful reload lets the old workers finish their
    requests, which is what a drain needs). Changes are computed on that mapping, so a second run reports
    RV(ignore:changed=false).
  - O(split) turns a canary percentage into weights (1 to 100 per server, V(0) as C(down)); O(servers) sets weights
    and states directly. Both may be given; a server's weight may come from only one of them.
  - Runs on the load balancer.
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - strata.deploy.traffic.nginx
  - strata.deploy.traffic.nginx_commands
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the file and predicts the changes; writes nothing, runs no command.
  diff_mode:
    support: full
    details: A table of weight and state per server before and after, and the file before and after.
  platform:
    platforms: posix
options:
  upstream:
    description:
      - Name of the C(upstream) block to change.
    type: str
    required: true
  servers:
    description:
      - Desired settings, as C(address -> {weight, state}), the address as written on the C(server) line
        (V(10.0.0.5:8080), V(unix:/run/app.sock)). Either key may be left out to keep the current value.
      - C(weight) is an integer of 0 or more; C(state) is one of V(ready), V(drain) or V(maint).
      - An address the upstream does not have fails the task before anything is written.
    type: dict
  split:
    description:
      - Traffic split between the stable and canary servers of the upstream, turned into weights.
      - Only weights are set; use O(servers) in the same task to set states.
    type: dict
    suboptions:
      percent:
        description:
          - Share of the traffic for the canary servers, from 0 to 100 (decimals allowed).
        type: float
        required: true
      stable:
        description:
          - Addresses of the stable servers.
        type: list
        elements: str
        required: true
      canary:
        description:
          - Addresses of the canary servers.
        type: list
        elements: str
        required: true
notes:
  - The module keeps the other parameters of each C(server) line (C(max_fails), C(fail_timeout), C(backup), ...) and
    the other directives of the block, but not the comments of the file.
seealso:
  - module: strata.deploy.haproxy_servers
  - module: strata.deploy.traffic_info
"""

EXAMPLES = r"""
- name: Send 10% of upstream app to the canary 10.0.0.14:8080
  strata.deploy.nginx_upstream:
    upstream: app
    split:
      percent: 10
      stable: ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"]
      canary: ["10.0.0.14:8080"]

- name: Take 10.0.0.12:8080 out of upstream app (reload through systemd)
  strata.deploy.nginx_upstream:
    upstream: app
    path: /etc/nginx/strata/upstreams/app.conf
    reload_command: systemctl reload nginx
    servers:
      "10.0.0.12:8080": {state: maint}
"""

RETURN = r"""
changes:
  description: The servers whose weight or state changed (or would change in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - {backend: app, server: "10.0.0.14:8080", before: {weight: 0, state: ready}, after: {weight: 11, state: ready}}
read_back:
  description:
    - C(upstream -> address -> {weight, state}) for every server of the upstream, read back from the file after the
      change (the state read before, when nothing was written).
  returned: always
  type: dict
  sample: {app: {"10.0.0.11:8080": {weight: 100, state: ready}, "10.0.0.14:8080": {weight: 11, state: ready}}}
reload_seconds:
  description: Wall time of the one reload command, or V(null) when nginx was not reloaded.
  returned: always
  type: float
  sample: 0.031
path:
  description: The upstream include file.
  returned: always
  type: str
  sample: /etc/nginx/strata/upstreams/app.conf
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strata.deploy.plugins.module_utils._nginx.client import (
    NginxClient,
    apply_changes,
    render_upstreams,
    upstreams_state,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import NGINX


def argument_spec() -> dict:
    spec = glue.nginx_file_spec()
    spec.update(glue.nginx_commands_spec())
    spec.update(
        upstream={"type": "str", "required": True},
        servers={"type": "dict"},
        split={
            "type": "dict",
            "options": {
                "percent": {"type": "float", "required": True},
                "stable": {"type": "list", "elements": "str", "required": True},
                "canary": {"type": "list", "elements": "str", "required": True},
            },
        },
    )
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(), supports_check_mode=True, required_one_of=[("servers", "split")]
    )
    p = module.params
    upstream = p["upstream"]
    with glue.failing(module, "choosing the upstream file"):
        path = glue.nginx_upstream_path(p["path"], upstream)
    where = f"upstream {upstream} in {path}"

    with glue.failing(module, f"checking the desired state against {where}"):
        client = NginxClient(
            path, test_command=p["test_command"], reload_command=p["reload_command"], timeout=p["timeout"]
        )
        desired = glue.nginx_desired(upstream, p["servers"], p["split"], NGINX)
        upstreams, changes, rows = client.plan(desired)
        before_text = client.read_text() or ""
    result = {
        "changed": bool(changes),
        "changes": glue.changes_result(changes),
        "read_back": glue.state_result(upstreams_state(upstreams), [upstream]),
        "reload_seconds": None,
        "path": path,
    }
    if module._diff:
        after_text = render_upstreams(apply_changes(upstreams, changes)) if changes else before_text
        result["diff"] = [
            glue.diff_result(rows, where),
            {"before_header": path, "after_header": path, "before": before_text, "after": after_text},
        ]
    if module.check_mode or not changes:
        module.exit_json(**result)

    with glue.failing(module, f"applying {len(changes)} change(s) to {where}", glue.nginx_left):
        applied = client.apply(changes)
        read_back = client.current_state()
    result.update(
        read_back=glue.state_result(read_back, [upstream]),
        reload_seconds=None if applied.reload_seconds is None else round(applied.reload_seconds, 6),
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
