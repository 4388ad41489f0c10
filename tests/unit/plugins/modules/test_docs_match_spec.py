"""Every traffic module's documented options (doc fragments merged) equal its argument spec, option by option.

ansible-test sanity (validate-modules) checks the same thing; this test catches drift in the unit stage already,
and also checks each doc fragment against the spec builder that serves it.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible_collections.strata.deploy.plugins.doc_fragments.traffic import ModuleDocFragment
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue
from ansible_collections.strata.deploy.plugins.modules import (
    haproxy_servers,
    nginx_upstream,
    prometheus_gate,
    traffic_info,
)

MODULES = [haproxy_servers, nginx_upstream, traffic_info, prometheus_gate]
FRAGMENTS = {
    "haproxy": glue.haproxy_connection_spec,
    "nginx": glue.nginx_file_spec,
    "nginx_commands": glue.nginx_commands_spec,
    "prometheus": glue.prometheus_connection_spec,
}


def _fragment_options(name: str) -> dict[str, Any]:
    return yaml.safe_load(getattr(ModuleDocFragment, name.upper()))["options"]


def documented(module) -> dict[str, Any]:
    doc = yaml.safe_load(module.DOCUMENTATION)
    options: dict[str, Any] = {}
    for fragment in doc.get("extends_documentation_fragment", []):
        if fragment.startswith("strata.deploy.traffic."):
            options.update(_fragment_options(fragment.rsplit(".", 1)[1]))
    options.update(doc.get("options") or {})
    return options


def from_doc(options: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "type": option.get("type", "str"),
            "required": option.get("required", False),
            "default": option.get("default"),
            "choices": option.get("choices"),
            "elements": option.get("elements"),
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
            "elements": option.get("elements"),
            "options": from_spec(option["options"]) if "options" in option else None,
        }
        for name, option in spec.items()
    }


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_documented_options_equal_the_argument_spec(module):
    assert from_doc(documented(module)) == from_spec(module.argument_spec())


@pytest.mark.parametrize("fragment", sorted(FRAGMENTS))
def test_each_fragment_equals_its_spec_builder(fragment):
    assert from_doc(_fragment_options(fragment)) == from_spec(FRAGMENTS[fragment]())


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_examples_use_fqcn_and_return_parses(module):
    name = module.__name__.rsplit(".", 1)[1]
    tasks = yaml.safe_load(module.EXAMPLES)
    actions = [key for task in tasks for key in task if key not in ("name", "register", "when", "loop")]
    assert f"strata.deploy.{name}" in actions
    assert all(action.startswith(("strata.deploy.", "ansible.builtin.")) for action in actions), actions
    assert yaml.safe_load(module.RETURN)
    assert yaml.safe_load(module.DOCUMENTATION)["module"] == name


def test_secrets_are_no_log():
    assert prometheus_gate.argument_spec()["password"]["no_log"] is True
