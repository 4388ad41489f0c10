"""The controller configuration (awx/controller/*.yml) cannot ship a broken job template.

For every job template: its options are options of awx.awx.job_template (read from the bundled module's own
documentation), its project/inventory/execution environment are defined here, its playbook exists, its survey is
well typed (choices and defaults agree), every survey variable is one the playbook (or a playbook it imports, or
an argument spec of a role it uses) reads, and the playbook runs through ansible-runner - the way AWX runs it -
with the survey defaults as extra vars: with --syntax-check, and in check mode limited to the controller
(``--limit localhost``), which executes the input checks and the production guard that run there.

Running the templates against the live lab (`make lab`) needs the lab's containers: tests/unit does not start them;
see docs/awx.md ("Checking the templates against the lab").
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ansible_runner = pytest.importorskip("ansible_runner", reason="ansible-runner is pinned in requirements.txt")

ROOT = Path(__file__).resolve().parents[2]


def _load_check_templates():
    """awx/check_templates.py (not a package): its survey_defaults is the one both it and these tests use."""
    spec = importlib.util.spec_from_file_location("strata_awx_check_templates", ROOT / "awx/check_templates.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The extra vars AWX sends when the survey is accepted as it stands.
survey_defaults = _load_check_templates().survey_defaults
CONTROLLER = ROOT / "awx" / "controller"
AWX_MODULES = ROOT / ".venv/lib/python3.11/site-packages/ansible_collections/awx/awx/plugins/modules"
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def load_config() -> dict[str, Any]:
    config: dict[str, Any] = {}
    for path in sorted(CONTROLLER.glob("*.yml")):
        config.update(yaml.safe_load(path.read_text()))
    return config


CONFIG = load_config()
TEMPLATES = {t["name"]: t for t in CONFIG["controller_templates"]}
WORKFLOWS = {w["name"]: w for w in CONFIG["controller_workflows"]}


def module_options(module: str) -> set[str]:
    source = (AWX_MODULES / f"{module}.py").read_text()
    documentation = re.search(r"DOCUMENTATION = r?'''(.*?)'''", source, re.S)
    assert documentation, f"no DOCUMENTATION in awx.awx.{module}"
    return set(yaml.safe_load(documentation.group(1))["options"]) | {"name"}


def _workflow_nodes_doc() -> dict[str, Any]:
    source = (AWX_MODULES / "workflow_job_template.py").read_text()
    documentation = re.search(r"DOCUMENTATION = r?'''(.*?)'''", source, re.S)
    assert documentation
    return yaml.safe_load(documentation.group(1))["options"]["workflow_nodes"]["suboptions"]


def workflow_node_options() -> set[str]:
    return set(_workflow_nodes_doc())


def node_options_of_template() -> set[str]:
    return set(_workflow_nodes_doc()["unified_job_template"]["suboptions"])


def playbook_files(playbook: Path, seen: set[Path] | None = None) -> set[Path]:
    """The playbook and, recursively, the playbooks it imports."""
    seen = seen if seen is not None else set()
    seen.add(playbook)
    for play in yaml.safe_load(playbook.read_text()) or []:
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if imported and (playbook.parent / imported) not in seen:
            playbook_files(playbook.parent / imported, seen)
    return seen


def variables_read(playbook: Path) -> set[str]:
    """Every identifier in the playbook files and the options of the argument specs of the roles they use."""
    names: set[str] = set()
    for path in playbook_files(playbook):
        text = path.read_text()
        names |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
        for role in set(re.findall(r"strata\.deploy\.([a-z_]+)", text)):
            specs = ROOT / "roles" / role / "meta" / "argument_specs.yml"
            if specs.exists():
                for entry in yaml.safe_load(specs.read_text())["argument_specs"].values():
                    names |= set(entry.get("options", {}))
    return names


@pytest.mark.parametrize(
    ("key", "module"),
    [
        ("controller_projects", "project"),
        ("controller_inventories", "inventory"),
        ("controller_inventory_sources", "inventory_source"),
        ("controller_templates", "job_template"),
        ("controller_workflows", "workflow_job_template"),
        ("controller_execution_environments", "execution_environment"),
        ("controller_organizations", "organization"),
    ],
)
def test_every_object_uses_only_options_of_its_awx_module(key: str, module: str) -> None:
    allowed = module_options(module)
    for item in CONFIG[key]:
        assert set(item) <= allowed, f"{key} {item['name']}: not options of awx.awx.{module}: {set(item) - allowed}"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_points_at_what_exists(name: str) -> None:
    template = TEMPLATES[name]
    assert (ROOT / template["playbook"]).is_file(), f"{name}: {template['playbook']} does not exist"
    assert template["project"] in {p["name"] for p in CONFIG["controller_projects"]}
    assert template["inventory"] in {i["name"] for i in CONFIG["controller_inventories"]}
    assert template["execution_environment"] in {e["name"] for e in CONFIG["controller_execution_environments"]}


@pytest.mark.parametrize("name", [*TEMPLATES, *WORKFLOWS])
def test_survey_is_typed_and_its_defaults_agree_with_its_choices(name: str) -> None:
    item = TEMPLATES.get(name) or WORKFLOWS[name]
    if not item.get("survey_enabled"):
        assert "survey_spec" not in item
        return
    questions = item["survey_spec"]["spec"]
    assert len({q["variable"] for q in questions}) == len(questions), "one question per variable"
    for question in questions:
        where = f"{name}: {question['variable']}"
        assert question["type"] in SURVEY_TYPES, where
        assert question.get("question_name"), where
        default = question.get("default")
        if question["type"] in ("multiplechoice", "multiselect"):
            assert question.get("choices"), f"{where}: choices"
            chosen = str(default).split("\n") if question["type"] == "multiselect" else [default]
            assert set(chosen) <= set(question["choices"]), f"{where}: default {default!r} not in the choices"
        elif question["type"] == "integer":
            assert isinstance(default, int), where
            assert question.get("min", default) <= default <= question.get("max", default), where
        else:
            assert isinstance(default, str), f"{where}: AWX sends text as a string"
            assert question.get("min", 0) <= len(default) <= question.get("max", 1024), where
        if question.get("required"):
            assert default not in ("", None), f"{where}: a required question needs a default that passes"


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_survey_variable_is_read_by_the_playbook(name: str) -> None:
    template = TEMPLATES[name]
    playbook = ROOT / template["playbook"]
    if not playbook.is_file():
        pytest.fail(f"{name}: {template['playbook']} does not exist", pytrace=False)
    read = variables_read(playbook)
    wanted = set(survey_defaults(template.get("survey_spec"))) | set(template.get("extra_vars", {}))
    assert wanted <= read, f"{name}: the playbook does not read {wanted - read}"


def test_workflow_runs_deploy_canary_approval_promote() -> None:
    workflow = WORKFLOWS["strata release with canary"]
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    chain, node = [], "deploy"
    for _hop in range(len(nodes)):
        chain.append(node)
        following = nodes[node].get("related", {}).get("success_nodes", [])
        if not following:
            break
        node = following[0]["identifier"]
    assert chain == ["deploy", "canary", "approval", "promote"]
    assert nodes["approval"]["unified_job_template"]["type"] == "workflow_approval"
    assert nodes["promote"]["unified_job_template"]["name"] == "strata canary promote"
    assert TEMPLATES["strata canary promote"]["extra_vars"]["canary_promote"] is True
    for identifier in ("deploy", "canary", "promote"):
        assert nodes[identifier]["unified_job_template"]["name"] in TEMPLATES, identifier
    # the workflow's survey reaches the canary nodes: their playbook reads it
    read = variables_read(ROOT / TEMPLATES["strata canary"]["playbook"])
    assert set(survey_defaults(workflow["survey_spec"])) <= read
    node_options = workflow_node_options()
    for node_item in workflow["workflow_nodes"]:
        assert set(node_item) <= node_options, node_item["identifier"]
        template_keys = set(node_item["unified_job_template"])
        assert template_keys <= node_options_of_template(), node_item["identifier"]


def controller_plays(playbook: Path) -> bool:
    return any(
        play.get("hosts") == "localhost"
        for path in playbook_files(playbook)
        for play in yaml.safe_load(path.read_text()) or []
    )


def run_template(name: str, cmdline: str, tmp_path: Path) -> Any:
    template = TEMPLATES[name]
    if not (ROOT / template["playbook"]).is_file():
        pytest.fail(f"{name}: {template['playbook']} does not exist", pytrace=False)
    extravars = {**template.get("extra_vars", {}), **survey_defaults(template.get("survey_spec"))}
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    (tmp_path / "runner").mkdir()
    return ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"),
        project_dir=str(ROOT),
        playbook=template["playbook"],
        inventory=str(ROOT / "inventories" / "lab"),
        extravars=extravars,
        cmdline=cmdline,
        envvars=env,
        quiet=True,
        timeout=180,
    )


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_playbook_passes_syntax_check_through_ansible_runner(name: str, tmp_path: Path) -> None:
    result = run_template(name, "--syntax-check", tmp_path)
    assert (result.status, result.rc) == ("successful", 0), result.stdout.read()


CONTROLLER_CHECKED = [
    name for name, t in TEMPLATES.items() if (ROOT / t["playbook"]).is_file() and controller_plays(ROOT / t["playbook"])
]


def test_the_destructive_templates_have_controller_side_checks() -> None:
    for name in (
        "strata rollback",
        "strata blue-green",
        "strata redis failover",
        "strata rolling update",
        "strata postgresql switchover",
        "strata postgresql failover",
        "strata postgresql rejoin",
        "strata postgresql restore",
    ):
        assert name in CONTROLLER_CHECKED, name


@pytest.mark.parametrize("name", CONTROLLER_CHECKED)
def test_survey_defaults_pass_the_checks_that_run_on_the_controller(name: str, tmp_path: Path) -> None:
    """Check mode, limited to the controller (localhost, added as an explicit local host): the plays on
    localhost run - input checks, the production guard, the preview; the plays on the lab's hosts have no host."""
    local = tmp_path / "local.ini"
    local.write_text("localhost ansible_connection=local ansible_python_interpreter=python3\n")
    result = run_template(name, f"--check --limit localhost -i {local}", tmp_path)
    out = result.stdout.read()
    assert (result.status, result.rc) == ("successful", 0), out
    assert "FAILED!" not in out


def pins(path: Path) -> dict[str, str]:
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[re.sub(r"\[.*\]", "", name).strip().lower()] = version.strip()
    return found


def test_execution_environment_matches_what_the_project_is_tested_with() -> None:
    """ansible-builder v3, the project's ansible-core; the collections at the versions of the bundle in .venv."""
    ee = yaml.safe_load((ROOT / "awx/execution-environment.yml").read_text())
    assert ee["version"] == 3
    project = pins(ROOT / "requirements.txt")
    assert ee["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={project['ansible-core']}"
    runner = ee["dependencies"]["ansible_runner"]["package_pip"]
    assert runner == f"ansible-runner=={importlib.metadata.version('ansible-runner')}", (
        "the version the template tests ran with"
    )
    for name, version in pins(ROOT / "awx" / ee["dependencies"]["python"]).items():
        assert project.get(name) == version, (
            f"awx/requirements.txt pins {name}=={version}, the project {project.get(name)}"
        )
    bundle = ROOT / ".venv/lib/python3.11/site-packages/ansible_collections"
    galaxy = yaml.safe_load((ROOT / "awx" / ee["dependencies"]["galaxy"]).read_text())
    for collection in galaxy["collections"]:
        namespace, name = collection["name"].split(".")
        manifest = json.loads((bundle / namespace / name / "MANIFEST.json").read_text())
        assert collection["version"] == manifest["collection_info"]["version"], collection["name"]
    used = set(
        re.findall(
            r"\b([a-z_]+\.[a-z_]+)\.[a-z_]+:",
            "".join(p.read_text() for p in [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("playbooks/*.yml")]),
        )
    )
    needed = {
        c for c in used if c not in {"ansible.builtin", "strata.deploy"} and (bundle / c.replace(".", "/")).is_dir()
    }
    assert needed <= {c["name"] for c in galaxy["collections"]}, f"collections used but not in the EE: {needed}"
