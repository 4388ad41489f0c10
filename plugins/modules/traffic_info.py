#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: traffic_info
short_description: Read the weights, states and canary split of an HAProxy or nginx load balancer
version_added: 0.1.0
description:
  - Reads the weight and admin state of every server of every backend (HAProxy, from C(show servers state) on the
    runtime API socket) or upstream (nginx, from the upstream include file), and the share of the traffic the
    given canary servers receive.
  - Never changes anything.
  - The result's RV(servers) has the shape O(strata.deploy.haproxy_servers#module:servers) takes, so a state read
    here can be put back later.
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - strata.deploy.traffic.haproxy
  - strata.deploy.traffic.nginx
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  provider:
    description:
      - The load balancer to read. V(haproxy) uses O(socket) and O(timeout); V(nginx) uses O(path) (or the default
        file of O(upstream)).
    type: str
    required: true
    choices: [haproxy, nginx]
  upstream:
    description:
      - With O(provider=nginx), the upstream to report (only that one), and the default of O(path).
    type: str
  backends:
    description:
      - Report only these backends (HAProxy) or upstreams (nginx). All by default.
    type: list
    elements: str
  canary:
    description:
      - C(backend -> [server, ...]), the canary servers of each backend (HAProxy server names, nginx addresses).
        For each, RV(observed_split) reports the share of the traffic they receive.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Read the split of backend app, whose canary is app4
  strata.deploy.traffic_info:
    provider: haproxy
    canary:
      app: [app4]
  register: __split

- name: Show the canary's share of the traffic
  ansible.builtin.debug:
    msg: "app4 gets {{ __split.observed_split.app.percent }}% of backend app"

- name: Read the weights of nginx upstream app
  strata.deploy.traffic_info:
    provider: nginx
    upstream: app
    canary:
      app: ["10.0.0.14:8080"]
"""

RETURN = r"""
servers:
  description: C(backend -> server -> {weight, state}) for every reported backend or upstream.
  returned: always
  type: dict
  sample: {app: {app1: {weight: 256, state: ready}, app4: {weight: 28, state: ready}}}
observed_split:
  description:
    - For each backend of O(canary), the canary's share of the traffic from the weights. A server that is not
      V(ready) (V(drain), V(maint)) counts as weight 0 since it gets no new connection.
    - C(percent) is V(null) when every server of the backend is at weight 0 or out of service.
  returned: always
  type: dict
  sample: {app: {canary: [app4], canary_weight: 28, total_weight: 796, percent: 3.5176}}
source:
  description: The socket or file that was read.
  returned: always
  type: str
  sample: /run/haproxy/admin.sock
provider:
  description: The provider that was read.
  returned: always
  type: str
  sample: haproxy
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strata.deploy.plugins.module_utils._haproxy.client import HAProxyClient
from ansible_collections.strata.deploy.plugins.module_utils._nginx.client import NginxClient
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError


def argument_spec() -> dict:
    spec = glue.haproxy_connection_spec()
    spec.update(glue.nginx_file_spec())
    spec.update(
        provider={"type": "str", "required": True, "choices": ["haproxy", "nginx"]},
        upstream={"type": "str"},
        backends={"type": "list", "elements": "str"},
        canary={"type": "dict", "default": {}},
    )
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    with glue.failing(module, f"reading the {p['provider']} state"):
        if p["provider"] == "haproxy":
            source = p["socket"]
            state = HAProxyClient(source, timeout=p["timeout"]).current_state()
        else:
            source = glue.nginx_upstream_path(p["path"], p["upstream"])
            state = NginxClient(source).current_state()
        wanted = p["backends"] or ([p["upstream"]] if p["provider"] == "nginx" and p["upstream"] else list(state))
        unknown = sorted(name for name in wanted if name not in state)
        if unknown:
            known = ", ".join(sorted(state)) or "none"
            raise TrafficSpecError("backends", f"no such backend(s) {', '.join(unknown)} in {source} (known: {known})")
        servers = {name: state[name] for name in wanted}
        observed = glue.split_report(state, p["canary"])
    module.exit_json(
        changed=False,
        provider=p["provider"],
        source=source,
        servers=glue.state_result(servers),
        observed_split=observed,
    )


if __name__ == "__main__":
    main()
