"""The alert rules the prometheus role ships: promtool checks every file and runs every unit test, every alert has
a firing unit test, and a broken rule makes its unit test fail. (The web configuration filter is tested in
tests/unit/plugins/filter/test_web_config.py.)

promtool comes from Debian's `prometheus` package (`make host-deps`); a missing promtool FAILS these tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1].parent
RULES_DIR = ROOT / "roles" / "prometheus" / "files" / "rules"
TESTS_DIR = ROOT / "tests" / "unit" / "prometheus_rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(TESTS_DIR.glob("*_test.yml"))
SEVERITIES = {"critical", "warning", "info"}
PROMTOOL_TIMEOUT = 120


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"]))
    if not path:
        pytest.fail(
            "promtool not found in PATH or /usr/bin: install Debian's 'prometheus' package (`make host-deps`, "
            "lab/host-deps.sh) - the alert rules cannot be checked without it",
            pytrace=False,
        )
    return path


def run_promtool(promtool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=PROMTOOL_TIMEOUT, cwd=cwd, check=False
    )


def alerts_of(rule_file: Path) -> list[dict]:
    groups = yaml.safe_load(rule_file.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_role_ships_rules_and_unit_tests() -> None:
    assert len(RULE_FILES) >= 7, f"expected the shipped rule files in {RULES_DIR}"
    assert len(TEST_FILES) == len(RULE_FILES), "every rule file needs its <name>_test.yml"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(promtool: str, rule_file: Path) -> None:
    result = run_promtool(promtool, "check", "rules", rule_file)
    assert result.returncode == 0, f"promtool check rules {rule_file.name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(promtool: str, test_file: Path) -> None:
    result = run_promtool(promtool, "test", "rules", test_file.name, cwd=TESTS_DIR)
    assert result.returncode == 0, f"promtool test rules {test_file.name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_has_a_firing_unit_test(rule_file: Path) -> None:
    test_file = TESTS_DIR / f"{rule_file.stem}_test.yml"
    assert test_file.exists(), f"{rule_file.name} has no unit test {test_file.relative_to(ROOT)}"
    spec = yaml.safe_load(test_file.read_text())
    assert [Path(p).name for p in spec["rule_files"]] == [rule_file.name]
    fired = {
        case["alertname"]
        for test in spec["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    untested = {rule["alert"] for rule in alerts_of(rule_file)} - fired
    assert not untested, f"{rule_file.name}: alerts without a unit test that makes them fire: {sorted(untested)}"


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_every_alert_has_severity_for_and_text(rule_file: Path) -> None:
    for rule in alerts_of(rule_file):
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity must be one of {SEVERITIES}"
        assert "for" in rule, f"{name}: needs a for: (prometheus_alert_for tunes it per group)"
        assert {"summary", "description"} <= set(rule.get("annotations", {})), f"{name}: summary and description"


def test_a_broken_rule_fails_its_unit_test(promtool: str, tmp_path: Path) -> None:
    """The unit tests can fail: InstanceDown on up == 1 instead of up == 0 must not pass instance_test.yml."""
    rules = tmp_path / "instance.yml"
    rules.write_text((RULES_DIR / "instance.yml").read_text().replace("expr: up == 0", "expr: up == 1"))
    spec = yaml.safe_load((TESTS_DIR / "instance_test.yml").read_text())
    spec["rule_files"] = [rules.name]
    (tmp_path / "instance_test.yml").write_text(yaml.safe_dump(spec))
    result = run_promtool(promtool, "test", "rules", "instance_test.yml", cwd=tmp_path)
    assert result.returncode != 0, "a broken InstanceDown rule passed its unit test"
