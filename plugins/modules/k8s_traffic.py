#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_traffic
short_description: Shift traffic on Kubernetes - Gateway API HTTPRoute weights or ingress-nginx canary annotations
version_added: 0.1.0
description:
  - With O(mode=httproute), sets C(backendRefs[].weight) of one rule of a Gateway API C(HTTPRoute). Weight 0 means no
    traffic. Before anything is sent, every Service the rule's backendRefs name must exist (a backendRef to a
    missing Service serves errors for its share of the traffic).
  - With O(mode=ingress_nginx), sets the canary annotations (C(canary), C(canary-weight), C(canary-by-header),
    C(canary-by-header-value), C(canary-by-cookie)) of the canary Ingress.
  - Every write is a merge patch guarded by the C(resourceVersion) it was computed from; if someone else changed the
    object in between, the API server refuses it (409), and the module reads again and recomputes, at most
    O(conflict_retries) times.
  - An unchanged split sends nothing and reports RV(ignore:changed=false).
  - Check mode sends the patch as a server-side dry run (C(dryRun=All)), which the API server validates and does
    not store.
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: A server-side dry run of the same patch.
  diff_mode:
    support: full
    details: A table of the weight per backendRef (or the canary weight), before and after.
  platform:
    platforms: posix
requirements:
  - kubernetes (the Python client)
options:
  mode:
    description:
      - V(httproute) for a Gateway API C(HTTPRoute), V(ingress_nginx) for an ingress-nginx canary Ingress.
    type: str
    choices: [httproute, ingress_nginx]
    default: httproute
  namespace:
    description:
      - Namespace of the route (and of the Services it refers to).
    type: str
    required: true
  name:
    description:
      - Name of the C(HTTPRoute), or of the canary C(Ingress) with O(mode=ingress_nginx).
    type: str
    required: true
  rule:
    description:
      - Index of the HTTPRoute rule whose backendRefs are weighed.
    type: int
    default: 0
  backends:
    description:
      - With O(mode=httproute), C(service name -> weight) (0 to 1000000). BackendRefs not listed keep their weight.
      - A name that is not a backendRef of the rule, or weights that would all be 0, fail before anything is sent.
    type: dict
  canary_weight:
    description:
      - With O(mode=ingress_nginx), the canary's share of the traffic, 0 to 100.
    type: int
  canary_header:
    description:
      - With O(mode=ingress_nginx), the request header that sends a request to the canary.
    type: str
  canary_header_value:
    description:
      - With O(mode=ingress_nginx), the value of O(canary_header) that sends a request to the canary.
    type: str
  canary_cookie:
    description:
      - With O(mode=ingress_nginx), the cookie that sends a request to the canary.
    type: str
  journal:
    description:
      - A rollout journal (JSON) to keep in the annotation C(strata.deploy/rollout-journal) of the object, written in
        the same patch as the weights.
    type: str
  kubeconfig:
    description:
      - Path of the kubeconfig file. Defaults to C(KUBECONFIG) or C(~/.kube/config).
    type: path
  context:
    description:
      - Context of the kubeconfig to use. Defaults to its current context.
    type: str
  timeout:
    description:
      - Seconds to wait for each answer of the API server.
    type: float
    default: 10
  conflict_retries:
    description:
      - How many times a write refused with 409 (the object changed since it was read) is recomputed and sent again.
    type: int
    default: 3
seealso:
  - module: strata.deploy.alb_traffic
"""

EXAMPLES = r"""
- name: Send 10% of route web's traffic to Service web-canary
  strata.deploy.k8s_traffic:
    namespace: shop
    name: web
    backends:
      web-stable: 90
      web-canary: 10
  delegate_to: localhost

- name: Send 25% to the ingress-nginx canary Ingress web-canary, and every request with X-Canary always
  strata.deploy.k8s_traffic:
    mode: ingress_nginx
    namespace: shop
    name: web-canary
    canary_weight: 25
    canary_header: X-Canary
    canary_header_value: always
  delegate_to: localhost
"""

RETURN = r"""
read_back:
  description:
    - With O(mode=httproute), C(route -> service -> {weight, state}) of the rule, as the API server answered the
      write (the dry run in check mode), or as read when nothing was sent.
  returned: when O(mode=httproute)
  type: dict
  sample: {web: {web-stable: {weight: 90, state: ready}, web-canary: {weight: 10, state: ready}}}
canary:
  description: With O(mode=ingress_nginx), the canary settings after the change.
  returned: when O(mode=ingress_nginx)
  type: dict
  sample: {canary: true, weight: 25, header: X-Canary, header_value: always, cookie: null}
patch:
  description: The merge patch sent (without the journal), or V(null) when nothing differs.
  returned: always
  type: dict
  sample: {spec: {rules: [{backendRefs: [{name: web-stable, port: 80, weight: 90}]}]}}
conflicts:
  description: Writes refused with 409 and recomputed.
  returned: always
  type: int
  sample: 0
resource_version:
  description: The object's C(resourceVersion) after the write (as read when nothing was written).
  returned: always
  type: str
  sample: "48213"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.strata.deploy.plugins.module_utils._k8s import routes
from ansible_collections.strata.deploy.plugins.module_utils._k8s.client import (
    HAS_KUBERNETES,
    K8sClient,
    ingress_path,
    route_path,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import ServerSpec, diff_rows


def argument_spec() -> dict:
    return {
        "mode": {"type": "str", "choices": ["httproute", "ingress_nginx"], "default": "httproute"},
        "namespace": {"type": "str", "required": True},
        "name": {"type": "str", "required": True},
        "rule": {"type": "int", "default": 0},
        "backends": {"type": "dict"},
        "canary_weight": {"type": "int"},
        "canary_header": {"type": "str"},
        "canary_header_value": {"type": "str"},
        "canary_cookie": {"type": "str"},
        "journal": {"type": "str"},
        "kubeconfig": {"type": "path"},
        "context": {"type": "str"},
        "timeout": {"type": "float", "default": 10.0},
        "conflict_retries": {"type": "int", "default": 3},
    }


def _without_journal(patch: dict | None) -> dict | None:
    if not patch:
        return None
    clean = dict(patch)
    annotations = dict((clean.get("metadata") or {}).get("annotations") or {})
    annotations.pop(routes.JOURNAL_ANNOTATION, None)
    if "metadata" in clean:
        clean["metadata"] = dict(clean["metadata"], annotations=annotations)
        if not annotations:
            clean.pop("metadata")
    return clean or None


def run_httproute(module: AnsibleModule, client: K8sClient) -> dict:
    p = module.params
    ns, name, rule = p["namespace"], p["name"], p["rule"]
    what = f"HTTPRoute {ns}/{name}"
    sent: dict = {}

    def compute(route: dict) -> dict | None:
        wanted = routes.check_backends(route, rule, p["backends"] or {})
        missing = [
            svc
            for svc in routes.route_weights(route, rule)
            if not client.service_exists(ns, svc)  # every backendRef of the rule, before any shift
        ]
        if missing:
            raise TrafficSpecError(
                "backends",
                f"{what} rule {rule} refers to Service(s) {', '.join(missing)} that do not exist in namespace {ns}: "
                "create them first (a backendRef to a missing Service serves errors for its share)",
            )
        sent["weights"] = wanted
        sent["patch"] = routes.route_patch(route, rule, wanted, p["journal"])
        return sent["patch"]

    with glue.failing(module, f"checking and patching {what}"):
        before, after = client.update(
            route_path(ns, name),
            what,
            compute,
            dry_run=module.check_mode,
            conflict_retries=p["conflict_retries"],
        )
    current = routes.route_state(before, rule)
    final = routes.route_state(after or before, rule)
    result = {
        "changed": after is not None,
        "read_back": glue.state_result(final),
        "patch": _without_journal(sent.get("patch")),
        "conflicts": client.conflicts,
        "resource_version": str(((after or before).get("metadata") or {}).get("resourceVersion") or ""),
    }
    if module._diff:
        desired = {name: {svc: ServerSpec(weight=w) for svc, w in sent.get("weights", {}).items()}}
        result["diff"] = glue.diff_result(diff_rows(desired, current, lb=f"{ns}/{name}"), what)
    return result


def run_ingress_nginx(module: AnsibleModule, client: K8sClient) -> dict:
    p = module.params
    ns, name = p["namespace"], p["name"]
    what = f"Ingress {ns}/{name}"
    desired = {
        "weight": p["canary_weight"],
        "header": p["canary_header"],
        "header_value": p["canary_header_value"],
        "cookie": p["canary_cookie"],
    }
    sent: dict = {}

    def compute(ingress: dict) -> dict | None:
        sent["patch"] = routes.nginx_patch(ingress, desired, p["journal"])
        return sent["patch"]

    with glue.failing(module, f"checking and patching {what}"):
        before, after = client.update(
            ingress_path(ns, name), what, compute, dry_run=module.check_mode, conflict_retries=p["conflict_retries"]
        )
    result = {
        "changed": after is not None,
        "canary": routes.nginx_canary(after or before),
        "patch": _without_journal(sent.get("patch")),
        "conflicts": client.conflicts,
        "resource_version": str(((after or before).get("metadata") or {}).get("resourceVersion") or ""),
    }
    if module._diff:
        result["diff"] = {
            "before": f"{routes.nginx_canary(before)}\n",
            "after": f"{result['canary']}\n",
            "before_header": f"{what} (before)",
            "after_header": f"{what} (after)",
        }
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"))
    p = module.params
    with glue.failing(module, "connecting to the Kubernetes API server"):
        if p["mode"] == "httproute" and not p["backends"] and not p["journal"]:
            raise TrafficSpecError("backends", "expected service -> weight for mode httproute (or journal)")
        client = K8sClient.connect(kubeconfig=p["kubeconfig"], context=p["context"], timeout=p["timeout"])
    run = run_httproute if p["mode"] == "httproute" else run_ingress_nginx
    result = run(module, client)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
