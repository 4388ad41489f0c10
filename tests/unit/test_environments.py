"""The example environments (inventories/dev, staging, production) and the production guard (strata.deploy.confirm).

The inventories are parsed by ansible-inventory and the playbooks checked by ansible-playbook, as a user runs them.
The guard is proven by running the destructive playbooks for real against the production example inventory, whose
hosts do not exist: ssh is replaced by a recorder (ANSIBLE_SSH_EXECUTABLE) that writes down every connection
attempt and fails it. Refused runs must leave the record empty; a confirmed run must fill it, which proves the
recorder sees connections at all.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
ENVIRONMENTS = {
    "dev": ipaddress.ip_network("192.0.2.0/24"),
    "staging": ipaddress.ip_network("198.51.100.0/24"),
    "production": ipaddress.ip_network("203.0.113.0/24"),
}
GROUPS = {"lb", "app", "postgresql", "redis", "monitoring"}
TIMEOUT = 180


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.update(extra or {})
    return env


def run(argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env=ansible_env(extra_env), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def inventory(env: str) -> dict:
    result = run([str(BIN / "ansible-inventory"), "-i", f"inventories/{env}", "--list"])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_inventory_parses_with_the_lab_groups_on_documentation_addresses(env: str) -> None:
    data = inventory(env)
    lab = inventory("lab")
    assert set(data["all"]["children"]) - {"ungrouped"} == GROUPS == set(lab["all"]["children"]) - {"ungrouped"}
    hostvars = data["_meta"]["hostvars"]
    for group in GROUPS:
        assert data[group]["hosts"], f"{env}: group {group} has no host"
    for host, hvars in hostvars.items():
        assert ipaddress.ip_address(hvars["ansible_host"]) in ENVIRONMENTS[env], f"{env}: {host}"
    graph = run([str(BIN / "ansible-inventory"), "-i", f"inventories/{env}", "--graph"])
    assert graph.returncode == 0, graph.stderr


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_layers_resolve_in_order_and_mark_the_environment(env: str) -> None:
    hostvars = inventory(env)["_meta"]["hostvars"]
    redis_host = next(h for h in hostvars if h.startswith("redis1."))
    values = hostvars[redis_host]
    assert values["strata_environment"] == env
    assert values["strata_production"] is (env == "production")
    # layer 2 (group_vars/all/common.yml) sets redis_maxmemory 1gb; production's layer 3 (environment.yml) wins
    assert values["redis_maxmemory"] == ("4gb" if env == "production" else "1gb")
    # the tier layer (group_vars/redis.yml) names a host of this inventory
    assert values["redis_primary"] in hostvars


def test_the_shared_layer_is_the_same_file_in_every_environment() -> None:
    texts = {env: (ROOT / "inventories" / env / "group_vars/all/common.yml").read_text() for env in ENVIRONMENTS}
    assert len(set(texts.values())) == 1, "group_vars/all/common.yml differs between environments: change all three"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_secrets_map_to_vault_variables_that_the_example_vault_defines(env: str) -> None:
    folder = ROOT / "inventories" / env / "group_vars" / "all"
    secrets = yaml.safe_load((folder / "secrets.yml").read_text())
    lab_secrets = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/secrets.yml").read_text())
    # Every secret the lab maps, and more: the example environments also run Redis, which the lab's site.yml
    # does not apply yet.
    assert set(lab_secrets) <= set(secrets), "every role secret of the lab"
    referenced = set()
    for name, value in secrets.items():
        found = re.fullmatch(r"\{\{ (vault_[a-z0-9_]+) \}\}", value)
        assert found, f"{env}: {name} must be read from a vault_* variable, is {value!r}"
        referenced.add(found.group(1))
    example_text = (folder / "vault.yml.example").read_text()
    assert not example_text.startswith("$ANSIBLE_VAULT"), "the example is plain text with placeholders"
    assert f"--vault-id {env}@prompt" in example_text, "the example says how to make the real one"
    example = yaml.safe_load(example_text)
    assert set(example) == referenced
    assert all(str(v).startswith(f"CHANGE-ME-{env}-") for v in example.values()), "placeholders only"
    # no real vault is committed for an example environment, and none with the lab's committed password
    assert not (folder / "vault.yml").exists() or (folder / "vault.yml").read_text().startswith(
        f"$ANSIBLE_VAULT;1.2;AES256;{env}"
    )


PLAYBOOKS = sorted(p.name for p in (ROOT / "playbooks").glob("*.yml"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_playbook_passes_syntax_check_against_the_inventory(env: str) -> None:
    result = run(
        [str(BIN / "ansible-playbook"), "-i", f"inventories/{env}", "--syntax-check"]
        + [f"playbooks/{p}" for p in PLAYBOOKS]
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the production guard -------------------------------------------------------------------------------------

PROD = "production.example.net"
GUARDED = {
    "redis_failover": ["playbooks/redis_failover.yml", "-e", f"redis_failover_from=redis1.{PROD}"],
    "rollback": ["playbooks/rollback.yml", "-e", json.dumps({"rollback_hosts": [f"app3.{PROD}"]})],
    "blue_green_switch": [
        "playbooks/blue_green.yml",
        "-e",
        json.dumps(
            {
                "blue_green_blue_hosts": [f"app1.{PROD}", f"app2.{PROD}"],
                "blue_green_green_hosts": [f"app3.{PROD}", f"app4.{PROD}"],
                "blue_green_target": "green",
                "blue_green_version": "1.1.0",
            }
        ),
    ],
    "blue_green_switch_back": [
        "playbooks/blue_green.yml",
        "-e",
        json.dumps(
            {
                "blue_green_blue_hosts": [f"app1.{PROD}", f"app2.{PROD}"],
                "blue_green_green_hosts": [f"app3.{PROD}", f"app4.{PROD}"],
                "blue_green_target": "green",
                "blue_green_action": "switch_back",
            }
        ),
    ],
}
# The PostgreSQL playbooks join the proof as soon as they include the guard.
for _name, _args in {
    "postgresql_switchover": [],
    "postgresql_failover": ["-e", f"postgresql_failover_from=pg1.{PROD}"],
    "postgresql_restore": [],
}.items():
    _path = ROOT / "playbooks" / f"{_name}.yml"
    if _path.exists() and "strata.deploy.confirm" in _path.read_text():
        GUARDED[_name] = [f"playbooks/{_name}.yml", *_args]


@pytest.fixture
def ssh_recorder(tmp_path: Path) -> tuple[dict[str, str], Path]:
    record = tmp_path / "connections"
    fake = tmp_path / "ssh"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {record}\necho "recorded, not connected" >&2\nexit 255\n')
    fake.chmod(0o755)
    return {"ANSIBLE_SSH_EXECUTABLE": str(fake), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")}, record


def play(args: list[str], env: dict[str, str], inventory_name: str = "production") -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "ansible-playbook"), "-i", f"inventories/{inventory_name}", *args], env)


@pytest.mark.parametrize("name", GUARDED)
def test_production_without_confirm_stops_before_any_connection(name: str, ssh_recorder) -> None:
    env, record = ssh_recorder
    result = play(GUARDED[name], env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "is marked production: nothing was changed" in out, out
    assert "-e confirm=production" in out
    assert "about to: " in out, "the guard prints what the playbook is about to do"
    assert not record.exists(), f"a connection was attempted: {record.read_text()}"
    recap = out.split("PLAY RECAP", 1)[1]
    assert PROD not in recap, "no target host appears in the recap"


@pytest.mark.parametrize("name", ["redis_failover", "rollback"])
def test_production_with_a_wrong_confirm_stops_before_any_connection(name: str, ssh_recorder) -> None:
    env, record = ssh_recorder
    result = play([*GUARDED[name], "-e", "confirm=staging"], env)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "confirm=staging does not name this environment, which is production" in out, out
    assert not record.exists(), f"a connection was attempted: {record.read_text()}"


def test_production_with_confirm_goes_on_to_the_hosts(ssh_recorder) -> None:
    """The control: confirmed, the playbook passes the guard and reaches for the hosts (the recorder sees it)."""
    env, record = ssh_recorder
    result = play([*GUARDED["redis_failover"], "-e", "confirm=production"], env)
    out = result.stdout + result.stderr
    assert "confirmed with confirm=production" in out, out
    assert record.exists(), "the recorder saw no connection, so the refusals above would prove nothing"
    assert f"redis1.{PROD}" in out.split("PLAY RECAP", 1)[1]


def test_check_mode_previews_production_without_confirm(ssh_recorder) -> None:
    env, _record = ssh_recorder
    result = play([*GUARDED["redis_failover"], "--check"], env)
    out = result.stdout + result.stderr
    assert "check mode: a preview, nothing will change" in out, out


def test_a_non_production_environment_needs_no_confirm_but_refuses_a_wrong_one(ssh_recorder) -> None:
    env, record = ssh_recorder
    args = ["playbooks/redis_failover.yml", "-e", "redis_failover_from=redis1.staging.example.net"]
    result = play(args, env, "staging")
    assert "not production: no confirmation needed" in result.stdout, result.stdout
    assert record.exists()
    record.unlink()
    result = play([*args, "-e", "confirm=production"], env, "staging")
    assert result.returncode != 0
    assert "confirm=production does not name this environment, which is staging" in result.stdout, result.stdout
    assert not record.exists()
