#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: traffic_info
short_description: Read the weights, states and canary split of HAProxy, nginx, an AWS ALB rule or a Kubernetes route
version_added: 0.1.0
description:
  - Reads the weight and admin state of every server of every backend (HAProxy, from C(show servers state) on the
    runtime API socket) or upstream (nginx, from the upstream include file), and the share of the traffic the
    given canary servers receive.
  - With O(provider=alb), each of O(backends) is the ARN of an ALB listener rule; its "servers" are the target groups
    of its forward action (by name), and the rollout journal kept in the rule's tags is returned in RV(journals).
  - With O(provider=kubernetes), each of O(backends) is the name of a Gateway API C(HTTPRoute) in O(namespace); its
    "servers" are the Services of the backendRefs of rule O(rule), and the journal annotation is returned in
    RV(journals).
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
        file of O(upstream)); V(alb) uses the AWS options (O(region), O(access_key), ...) and needs O(backends);
        V(kubernetes) uses O(kubeconfig), O(context), O(namespace) and O(rule), and needs O(backends).
    type: str
    required: true
    choices: [haproxy, nginx, alb, kubernetes]
  upstream:
    description:
      - With O(provider=nginx), the upstream to report (only that one), and the default of O(path).
    type: str
  backends:
    description:
      - Report only these backends (HAProxy) or upstreams (nginx). All by default.
      - With O(provider=alb), the listener rule ARNs to read (required).
      - With O(provider=kubernetes), the HTTPRoute names to read (required).
    type: list
    elements: str
  canary:
    description:
      - C(backend -> [server, ...]), the canary servers of each backend (HAProxy server names, nginx addresses).
        For each, RV(observed_split) reports the share of the traffic they receive.
    type: dict
    default: {}
  region:
    description:
      - AWS region. Defaults to C(AWS_REGION) or C(AWS_DEFAULT_REGION), or the profile's region.
    type: str
    aliases: [aws_region]
  endpoint_url:
    description:
      - URL of the Elastic Load Balancing API, to use an endpoint other than AWS's (a VPC endpoint, an emulator).
    type: str
    aliases: [aws_endpoint_url]
  access_key:
    description:
      - AWS access key ID. Defaults to boto3's chain (C(AWS_ACCESS_KEY_ID), the shared credentials file, an instance
        or task role).
    type: str
    aliases: [aws_access_key_id, aws_access_key]
  secret_key:
    description:
      - AWS secret access key (never logged).
    type: str
    aliases: [aws_secret_access_key, aws_secret_key]
  session_token:
    description:
      - AWS session token of temporary credentials (never logged).
    type: str
    aliases: [aws_session_token]
  profile:
    description:
      - Named profile of the shared AWS configuration.
    type: str
    aliases: [aws_profile]
  validate_certs:
    description:
      - Whether to check the API endpoint's TLS certificate.
    type: bool
    default: true
  aws_timeout:
    description:
      - Seconds to connect and to read each API answer.
    type: float
    default: 10
  aws_retries:
    description:
      - Retries of a call AWS throttled or failed transiently (jittered exponential backoff). Other errors are not
        retried.
    type: int
    default: 5
  kubeconfig:
    description:
      - With O(provider=kubernetes), the kubeconfig file. Defaults to C(KUBECONFIG) or C(~/.kube/config).
    type: path
  context:
    description:
      - With O(provider=kubernetes), the kubeconfig context. Defaults to its current context.
    type: str
  namespace:
    description:
      - With O(provider=kubernetes), the namespace of the HTTPRoutes.
    type: str
    default: default
  rule:
    description:
      - With O(provider=kubernetes), the index of the HTTPRoute rule whose backendRefs are read.
    type: int
    default: 0
requirements:
  - boto3 (with O(provider=alb) only)
  - kubernetes (with O(provider=kubernetes) only)
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
journals:
  description:
    - With O(provider=alb), C(rule ARN -> rollout journal JSON) kept in the rule's tags (V(null) when it has none).
    - With O(provider=kubernetes), C(route -> rollout journal JSON) kept in its annotation (V(null) when none).
  returned: when O(provider=alb) or O(provider=kubernetes)
  type: dict
  sample: {"arn:aws:elasticloadbalancing:...:listener-rule/app/web/1/2/3": null}
provider:
  description: The provider that was read.
  returned: always
  type: str
  sample: haproxy
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.strata.deploy.plugins.module_utils._alb import module as alb
from ansible_collections.strata.deploy.plugins.module_utils._alb.client import HAS_BOTO3
from ansible_collections.strata.deploy.plugins.module_utils._haproxy.client import HAProxyClient
from ansible_collections.strata.deploy.plugins.module_utils._k8s import routes
from ansible_collections.strata.deploy.plugins.module_utils._k8s.client import HAS_KUBERNETES, K8sClient, route_path
from ansible_collections.strata.deploy.plugins.module_utils._nginx.client import NginxClient
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError


def argument_spec() -> dict:
    spec = glue.haproxy_connection_spec()
    spec.update(glue.nginx_file_spec())
    spec.update(
        provider={"type": "str", "required": True, "choices": ["haproxy", "nginx", "alb", "kubernetes"]},
        upstream={"type": "str"},
        backends={"type": "list", "elements": "str"},
        canary={"type": "dict", "default": {}},
    )
    spec.update(alb.aws_connection_spec())
    spec.update(
        kubeconfig={"type": "path"},
        context={"type": "str"},
        namespace={"type": "str", "default": "default"},
        rule={"type": "int", "default": 0},
    )
    return spec


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    journals = None
    if p["provider"] == "alb" and not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"))
    if p["provider"] == "kubernetes" and not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"))
    with glue.failing(module, f"reading the {p['provider']} state"):
        if p["provider"] == "alb":
            if not p["backends"]:
                raise TrafficSpecError("backends", "expected the ARN(s) of the listener rule(s) to read")
            client = alb.client_from_params(p)
            source = client.elbv2.meta.endpoint_url
            state = {}
            journals = {}
            for rule in p["backends"]:
                state.update(client.current_state(rule))
                journals[rule] = client.read_journal(rule)
        elif p["provider"] == "kubernetes":
            if not p["backends"]:
                raise TrafficSpecError("backends", "expected the name(s) of the HTTPRoute(s) to read")
            client = K8sClient.connect(kubeconfig=p["kubeconfig"], context=p["context"])
            source = client.api.configuration.host
            state = {}
            journals = {}
            for name in p["backends"]:
                route = client.get(route_path(p["namespace"], name), f"HTTPRoute {p['namespace']}/{name}")
                state.update(routes.route_state(route, p["rule"]))
                journals[name] = routes.read_journal(route)
        elif p["provider"] == "haproxy":
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
    extra = {} if journals is None else {"journals": journals}
    module.exit_json(
        changed=False,
        **extra,
        provider=p["provider"],
        source=source,
        servers=glue.state_result(servers),
        observed_split=observed,
    )


if __name__ == "__main__":
    main()
