"""Every role's defaults, argument specs and README agree (the specs are the one source)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())

spec = importlib.util.spec_from_file_location("role_docs", ROOT / "tools" / "role_docs.py")
role_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(role_docs)


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_has_argument_specs_for_every_entry_point(role: Path) -> None:
    specs_file = role / "meta" / "argument_specs.yml"
    assert specs_file.exists(), f"{role.name} has no meta/argument_specs.yml"
    specs = yaml.safe_load(specs_file.read_text())["argument_specs"]
    entry_points = {p.stem for p in (role / "tasks").glob("*.yml") if p.stem in ("main",) or p.stem in specs}
    assert entry_points <= set(specs), f"{role.name}: entry points without specs: {entry_points - set(specs)}"
    for entry, body in specs.items():
        for name, option in body.get("options", {}).items():
            assert option.get("description"), f"{role.name}:{entry}: {name} has no description"
            assert "type" in option, f"{role.name}:{entry}: {name} has no type"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_defaults_readme_and_specs_agree(role: Path) -> None:
    assert role_docs.problems(role, fix=False) == []


def test_stale_readme_is_reported(tmp_path: Path) -> None:
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    short_description: x\n    options:\n"
        "      demo_port: {type: int, default: 80, description: the port}\n"
    )
    (role / "defaults" / "main.yml").write_text("demo_port: 8080\ndemo_extra: 1\n")
    (role / "README.md").write_text("# demo\n")
    role_docs.ROOT = tmp_path
    found = role_docs.problems(role, fix=False)
    assert any("stale" in line for line in found)
    assert any("demo_port" in line and "differs" in line for line in found)
    assert any("demo_extra" in line for line in found)
