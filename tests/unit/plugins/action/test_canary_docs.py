"""The canary action's documented options (plugins/modules/canary.py) equal its argument spec, option by option, and
the documented provider choices are the providers the state machine knows."""

from __future__ import annotations

from typing import Any

import yaml
from ansible_collections.strata.deploy.plugins.action import canary as action
from ansible_collections.strata.deploy.plugins.module_utils._traffic import rollout
from ansible_collections.strata.deploy.plugins.modules import canary as docs


def normalise(options: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "type": option.get("type", "str"),
            "required": option.get("required", False),
            "default": option.get("default"),
            "choices": sorted(option["choices"]) if option.get("choices") else None,
            "elements": option.get("elements"),
        }
        for name, option in options.items()
    }


def test_documented_options_equal_the_action_argument_spec():
    documented = yaml.safe_load(docs.DOCUMENTATION)["options"]
    assert normalise(documented) == normalise(action.ARGUMENT_SPEC)


def test_documented_providers_are_the_known_providers():
    documented = yaml.safe_load(docs.DOCUMENTATION)["options"]["provider"]["choices"]
    assert sorted(documented) == sorted(rollout.PROVIDERS)


def test_examples_and_return_are_yaml():
    assert yaml.safe_load(docs.EXAMPLES)[0]["strata.deploy.canary"]["provider"] == "haproxy"
    returned = yaml.safe_load(docs.RETURN)
    assert {"status", "decision", "msg", "summary", "observed", "plan", "gates", "events", "journal"} <= set(returned)
