#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: alb_traffic
short_description: Set the target group weights of ONE AWS ALB listener rule
version_added: 0.1.0
description:
  - Sets the weights (0 to 999) of the target groups of the weighted forward action of one listener rule, and its
    target group stickiness. Nothing else is sent - not the rule's conditions or priority, not its other actions,
    not other rules, not the load balancer.
  - Reads the rule, normalises its forward action and compares it with the desired weights, so an unchanged split
    reports RV(ignore:changed=false) and sends nothing. After a change the rule is read back (C(describe_rules)) and
    verified.
  - Throttling and transient AWS errors are retried with a jittered, bounded backoff; any other error fails at once
    and names what was tried and what was left.
  - Can also keep a rollout journal in the rule's tags (O(journal)); the P(strata.deploy.canary#module) action does so
    with O(strata.deploy.canary#module:provider=alb).
  - Uses boto3. Usually run on the controller (C(delegate_to) a host that has credentials).
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the rule and predicts the change; sends no write call.
  diff_mode:
    support: full
    details: A table of the weight per target group, before and after, and the stickiness.
  platform:
    platforms: posix
requirements:
  - boto3
options:
  rule_arn:
    description:
      - ARN of the listener rule whose forward action is weighed. A listener's default rule is not a rule this module
        changes.
    type: str
    required: true
  target_groups:
    description:
      - C(target group -> weight), each target group by name or ARN, each weight an integer from 0 to 999.
      - Target groups not listed keep their weight. Every target group must already be in the rule's forward action;
        one that is not fails the task before anything is sent, as does a split where every weight is 0.
    type: dict
  stickiness:
    description:
      - Target group stickiness of the forward action. Left out, it is kept as it is.
    type: dict
    suboptions:
      enabled:
        description:
          - Whether a client sticks to the target group it was first sent to.
        type: bool
        required: true
      duration:
        description:
          - Seconds a client sticks (1 to 604800). Defaults to the current duration, or 3600.
        type: int
  register:
    description:
      - C(target group -> [target, ...]) to register before the weights are set. A target is an instance ID or IP
        address, optionally with C(:port). The target group is given by ARN, or by name when it is in the rule.
      - Targets already registered (any state but C(unused) or C(draining)) are left alone.
    type: dict
  deregister:
    description:
      - C(target group -> [target, ...]) to deregister after the weights are set (same forms as O(register)).
      - Targets not registered are left alone. See O(wait_drained).
    type: dict
  wait_drained:
    description:
      - After deregistering, poll C(describe_target_health) until none of the O(deregister) targets is C(draining),
        for at most O(drain_timeout) seconds, instead of sitting out the target group's deregistration delay blindly.
      - If some are still draining at the deadline, the task fails (the weights and registrations stay applied) and
        lists them.
    type: bool
    default: true
  drain_timeout:
    description:
      - Seconds to wait for the deregistered targets to drain.
    type: float
    default: 60
  journal:
    description:
      - A rollout journal (JSON, as P(strata.deploy.canary#module) writes it) to keep in the rule's tags, after the
        weights are set. Compact encoding, at most 25 tags of the rule; see docs/traffic-cloud.md.
    type: str
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
notes:
  - The IAM permissions needed are C(elasticloadbalancing:DescribeRules), C(ModifyRule), with O(journal)
    C(DescribeTags), C(AddTags) and C(RemoveTags), with O(register)/O(deregister) C(DescribeTargetHealth),
    C(RegisterTargets) and C(DeregisterTargets).
seealso:
  - module: strata.deploy.traffic_info
  - module: strata.deploy.haproxy_servers
"""

EXAMPLES = r"""
- name: Send 10% of the rule's traffic to target group green
  strata.deploy.alb_traffic:
    rule_arn: "{{ web_rule_arn }}"
    target_groups:
      blue: 899
      green: 100
  delegate_to: localhost

- name: Everything to green, clients sticking to it for 10 minutes
  strata.deploy.alb_traffic:
    rule_arn: "{{ web_rule_arn }}"
    region: eu-west-1
    target_groups:
      blue: 0
      green: 999
    stickiness:
      enabled: true
      duration: 600
  delegate_to: localhost
"""

RETURN = r"""
read_back:
  description:
    - C(rule_arn -> target group -> {weight, state}) read back from the rule after the change (as read before, when
      nothing was sent). C(state) is always V(ready) (a target group has no admin state).
  returned: always
  type: dict
  sample: {"arn:aws:elasticloadbalancing:...:listener-rule/app/web/1/2/3": {blue: {weight: 899, state: ready}}}
changes:
  description: The target groups whose weight changed (or would change in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{backend: "arn:...", server: green, before: {weight: 0, state: ready}, after: {weight: 100, state: ready}}]
stickiness:
  description: The forward action's stickiness before and after (C(duration) is V(null) when disabled).
  returned: always
  type: dict
  sample: {before: {enabled: false, duration: null}, after: {enabled: true, duration: 600}}
retries:
  description: API calls retried after throttling or a transient error.
  returned: always
  type: int
  sample: 0
targets:
  description:
    - C(target group ARN -> {registered, deregistered}), the targets registered and deregistered (or that would be,
      in check mode), as C(id) or C(id:port).
  returned: always
  type: dict
  sample: {"arn:aws:elasticloadbalancing:...:targetgroup/green/1": {registered: ["10.0.1.7:8080"], deregistered: []}}
draining:
  description: Deregistered targets still draining at the end of O(drain_timeout) (empty when all drained).
  returned: always
  type: dict
  sample: {}
journal_tags:
  description: Tags written to keep O(journal) (0 when none was written).
  returned: always
  type: int
  sample: 3
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.strata.deploy.plugins.module_utils._alb import module as alb
from ansible_collections.strata.deploy.plugins.module_utils._alb.client import (
    HAS_BOTO3,
    AlbClient,
    AlbVerifyError,
    Plan,
    parse_target,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import UnknownTargetError

INACTIVE = ("unused", "draining")


def _name(target: tuple) -> str:
    return target[0] if target[1] is None else f"{target[0]}:{target[1]}"


def _tg_arn(plan: Plan, given: str, param: str) -> str:
    if given.startswith("arn:"):
        return given
    if given in plan.forward.arns:
        return plan.forward.arns[given]
    known = ", ".join(plan.forward.arns) or "none"
    raise UnknownTargetError(param, f"target group {given} is not in the rule (give its ARN, or one of: {known})")


def target_changes(client: AlbClient, plan: Plan, register: dict | None, deregister: dict | None) -> dict:
    """``arn -> {"register": [...], "deregister": [...], "all_deregister": [...]}``: only what differs."""
    changes: dict = {}
    for option, wanted in (("register", register or {}), ("deregister", deregister or {})):
        for given, raw in wanted.items():
            param = f"{option}.{given}"
            arn = _tg_arn(plan, str(given), param)
            items = raw if isinstance(raw, list) else [raw]
            targets = [parse_target(item, f"{param}[{i}]") for i, item in enumerate(items)]
            health = client.describe_target_health(arn)
            entry = changes.setdefault(arn, {"register": [], "deregister": [], "all_deregister": []})

            def active(target: tuple, states: dict = health) -> bool:
                return any(
                    tid == target[0] and (target[1] is None or port == target[1]) and state not in INACTIVE
                    for (tid, port), state in states.items()
                )

            if option == "register":
                entry["register"] += [t for t in targets if not active(t)]
            else:
                entry["deregister"] += [t for t in targets if active(t)]
                entry["all_deregister"] += targets
    return changes


def argument_spec() -> dict:
    spec = {
        "rule_arn": {"type": "str", "required": True},
        "target_groups": {"type": "dict"},
        "stickiness": {
            "type": "dict",
            "options": {
                "enabled": {"type": "bool", "required": True},
                "duration": {"type": "int"},
            },
        },
        "register": {"type": "dict"},
        "deregister": {"type": "dict"},
        "wait_drained": {"type": "bool", "default": True},
        "drain_timeout": {"type": "float", "default": 60.0},
        "journal": {"type": "str"},
    }
    spec.update(alb.aws_connection_spec())
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_one_of=[("target_groups", "stickiness", "journal", "register", "deregister")],
    )
    if not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3"))
    p = module.params
    rule = p["rule_arn"]
    where = f"listener rule {rule}"
    with glue.failing(module, f"reading and checking {where}"):
        client = alb.client_from_params(p)
        plan = client.plan(rule, p["target_groups"] or {}, p["stickiness"])
    result = {
        "changed": plan.changed,
        "changes": glue.changes_result(plan.changes),
        "read_back": glue.state_result(plan.current),
        "stickiness": {"before": plan.stickiness_before.as_dict(), "after": plan.stickiness_after.as_dict()},
        "retries": client.retried,
        "journal_tags": 0,
        "targets": {},
        "draining": {},
    }
    with glue.failing(module, f"checking the targets of the target groups of {where}"):
        targets = target_changes(client, plan, p["register"], p["deregister"])
    result["targets"] = {
        arn: {"registered": [_name(t) for t in c["register"]], "deregistered": [_name(t) for t in c["deregister"]]}
        for arn, c in targets.items()
    }
    target_changed = any(c["register"] or c["deregister"] for c in targets.values())
    result["changed"] = plan.changed or target_changed
    if module._diff:
        diff = glue.diff_result(plan.rows, where)
        diff["before"] += f"stickiness {plan.stickiness_before.as_dict()}\n"
        diff["after"] += f"stickiness {plan.stickiness_after.as_dict()}\n"
        result["diff"] = diff
    if module.check_mode:
        result["changed"] = result["changed"] or bool(p["journal"])
        module.exit_json(**result)

    for arn, change in targets.items():
        if change["register"]:
            with glue.failing(module, f"registering {len(change['register'])} target(s) in {arn}"):
                client.register_targets(arn, change["register"])
    if plan.changed:

        def left(exc: BaseException) -> tuple[str, dict]:
            if isinstance(exc, AlbVerifyError):
                return "AWS accepted the change but the rule shows other weights; read it with traffic_info", {}
            return "the rule was not modified (modify_rule is all or nothing)", {}

        with glue.failing(module, f"modifying the forward action of {where}", left):
            result["read_back"] = glue.state_result(client.apply(rule, plan))
    for arn, change in targets.items():
        if change["deregister"]:
            with glue.failing(
                module, f"deregistering {len(change['deregister'])} target(s) from {arn}", "see traffic_info"
            ):
                client.deregister_targets(arn, change["deregister"])
        if p["wait_drained"] and change["all_deregister"]:
            tried = f"waiting up to {p['drain_timeout']:g}s for the deregistered targets of {arn} to drain"
            with glue.failing(module, tried, "the weights and target changes are applied"):
                left = client.wait_drained(arn, change["all_deregister"], p["drain_timeout"])
            if left:
                result["draining"][arn] = [_name(t) for t in left]
    if result["draining"]:
        busy = "; ".join(f"{arn}: {', '.join(names)}" for arn, names in result["draining"].items())
        module.fail_json(
            msg=f"targets still draining after {p['drain_timeout']:g}s: {busy}; the weights and target changes are "
            "applied (raise drain_timeout, or lower the target group's deregistration delay)",
            **result,
        )
    if p["journal"]:
        kept = "the weights are applied" if plan.changed else glue.NOTHING_CHANGED
        with glue.failing(module, f"writing the rollout journal to the tags of {where}", f"{kept}; the journal is not"):
            result["journal_tags"] = client.write_journal(rule, p["journal"])
        result["changed"] = True
    result["retries"] = client.retried
    module.exit_json(**result)


if __name__ == "__main__":
    main()
