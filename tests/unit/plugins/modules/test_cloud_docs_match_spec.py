"""``alb_traffic``'s and ``k8s_traffic``'s documented options equal their argument specs (aliases and secrets
included), and the AWS options are documented identically in ``alb_traffic`` and ``traffic_info`` (one spec builder:
``_alb/module.py``)."""

from __future__ import annotations

from typing import Any

import yaml
from ansible_collections.strata.deploy.plugins.module_utils._alb import module as alb
from ansible_collections.strata.deploy.plugins.modules import alb_traffic, k8s_traffic, traffic_info


def from_doc(options: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "type": option.get("type", "str"),
            "required": option.get("required", False),
            "default": option.get("default"),
            "choices": option.get("choices"),
            "aliases": sorted(option.get("aliases") or []),
            "options": from_doc(option["suboptions"]) if "suboptions" in option else None,
        }
        for name, option in options.items()
    }


def from_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "type": option.get("type", "str"),
            "required": option.get("required", False),
            "default": option.get("default"),
            "choices": option.get("choices"),
            "aliases": sorted(option.get("aliases") or []),
            "options": from_spec(option["options"]) if "options" in option else None,
        }
        for name, option in spec.items()
    }


def test_alb_traffic_documented_options_equal_the_argument_spec() -> None:
    documented = yaml.safe_load(alb_traffic.DOCUMENTATION)["options"]
    assert from_doc(documented) == from_spec(alb_traffic.argument_spec())


def test_aws_options_are_documented_the_same_in_both_modules() -> None:
    names = list(alb.aws_connection_spec())
    ours = yaml.safe_load(alb_traffic.DOCUMENTATION)["options"]
    info = yaml.safe_load(traffic_info.DOCUMENTATION)["options"]
    assert {n: ours[n] for n in names} == {n: info[n] for n in names}
    assert from_spec(alb.aws_connection_spec()) == from_doc({n: ours[n] for n in names})


def test_aws_secrets_are_no_log() -> None:
    spec = alb.aws_connection_spec()
    assert spec["secret_key"]["no_log"] is True
    assert spec["session_token"]["no_log"] is True


def test_alb_traffic_examples_use_fqcn_and_return_parses() -> None:
    tasks = yaml.safe_load(alb_traffic.EXAMPLES)
    actions = [key for task in tasks for key in task if key not in ("name", "register", "delegate_to")]
    assert actions and all(action == "strata.deploy.alb_traffic" for action in actions)
    assert yaml.safe_load(alb_traffic.RETURN)
    assert yaml.safe_load(alb_traffic.DOCUMENTATION)["module"] == "alb_traffic"


def test_k8s_traffic_documented_options_equal_the_argument_spec() -> None:
    documented = yaml.safe_load(k8s_traffic.DOCUMENTATION)["options"]
    assert from_doc(documented) == from_spec(k8s_traffic.argument_spec())
    tasks = yaml.safe_load(k8s_traffic.EXAMPLES)
    assert all("strata.deploy.k8s_traffic" in task for task in tasks)
    assert yaml.safe_load(k8s_traffic.RETURN)
