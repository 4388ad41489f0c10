"""The lab's container specs come from the inventory alone (tests without podman)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("labctl", ROOT / "lab" / "labctl.py")
labctl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(labctl)


def test_reference_inventory_has_the_twelve_hosts_in_their_groups() -> None:
    lab = labctl.load_inventory(str(ROOT / "inventories" / "lab"))
    assert lab["groups"]["lb"] == ["lb1", "lb2"]
    assert lab["groups"]["app"] == ["app1", "app2", "app3"]
    assert lab["groups"]["postgresql"] == ["pg1", "pg2", "pg3"]
    assert lab["groups"]["redis"] == ["redis1", "redis2", "redis3"]
    assert lab["groups"]["monitoring"] == ["mon1"]
    assert len(lab["hosts"]) == 12


def test_adding_a_host_to_the_inventory_adds_a_container(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  vars: {lab_name: t, lab_network: t-net}\n  children:\n"
                   "    app:\n      hosts: {app1: {}, app4: {lab_publish: ['127.0.0.1:8080:80']}}\n")
    lab = labctl.load_inventory(str(inv))
    assert lab["hosts"] == ["app1", "app4"]
    spec4 = labctl.container_spec(lab, "app4", "img:1")
    assert spec4[spec4.index("--name") + 1] == "app4"
    assert spec4[spec4.index("--hostname") + 1] == "app4"
    assert f"{labctl.LABEL}=t" in spec4
    assert "127.0.0.1:8080:80" in spec4
    assert spec4[-1] == "img:1"
    assert spec4[spec4.index("--volume") + 1] == "t-apt-app4:/var/cache/apt/archives"


def test_changed_settings_change_the_recipe_label(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  hosts: {web1: {}}\n")
    lab = labctl.load_inventory(str(inv))
    before = labctl.container_spec(lab, "web1", "img:1")
    after = labctl.container_spec(lab, "web1", "img:2")
    assert before[-2] != after[-2] and before[-2].startswith(labctl.RECIPE_LABEL)


def test_bad_subnet_is_a_one_line_error(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  vars: {lab_subnet: 10.1.2.300/24}\n  hosts: {web1: {}}\n")
    with pytest.raises(labctl.LabError, match="lab_subnet"):
        labctl.load_inventory(str(inv))


def test_preflight_without_root_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl.os, "geteuid", lambda: 1000)
    with pytest.raises(labctl.LabError, match="needs root"):
        labctl.preflight(None)


def test_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  vars: {lab_subnet: nonsense}\n  hosts: {web1: {}}\n")
    proc = subprocess.run(["python3", str(ROOT / "lab" / "labctl.py"), "summary", "-i", str(inv)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("lab: lab_subnet") and "Traceback" not in proc.stderr
    assert json.dumps(proc.stderr).count("\\n") == 1


def test_reference_inventory_gives_every_host_its_own_fixed_address() -> None:
    lab = labctl.load_inventory(str(ROOT / "inventories" / "lab"))
    addresses = [lab["hostvars"][host].get("lab_ip") for host in lab["hosts"]]
    assert None not in addresses and len(set(addresses)) == len(lab["hosts"])
    labctl.check_addresses(lab)
    spec = labctl.container_spec(lab, "redis2", "img:1")
    assert spec[spec.index("--ip") + 1] == "10.89.60.42"


@pytest.mark.parametrize(("hosts", "message"), [
    ("{web1: {lab_ip: 10.89.61.5}}", "web1: lab_ip 10.89.61.5 is outside lab_subnet 10.89.60.0/24"),
    ("{web1: {lab_ip: 10.89.60.255}}", "web1: lab_ip 10.89.60.255 is outside lab_subnet"),
    ("{web1: {lab_ip: 10.89.60.1}}", "web1: lab_ip 10.89.60.1 is the gateway"),
    ("{web1: {lab_ip: 10.89.60.300}}", "web1: lab_ip '10.89.60.300' is not an IP address"),
    ("{web1: {lab_ip: 10.89.60.11}, web2: {lab_ip: 10.89.60.11}}",
     "web2: lab_ip 10.89.60.11 is already the lab_ip of web1"),
])
def test_up_refuses_a_bad_lab_ip_before_creating_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          hosts: str, message: str) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(f"all:\n  vars: {{lab_subnet: 10.89.60.0/24}}\n  hosts: {hosts}\n")
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(labctl, "preflight", lambda args: None)
    monkeypatch.setattr(labctl, "podman", lambda *args, **kwargs: calls.append(args))
    with pytest.raises(labctl.LabError, match="refusing to create the lab") as refused:
        labctl.up(labctl.argparse.Namespace(inventory=str(inv)))
    assert message in str(refused.value)
    assert calls == []  # no podman command at all: no network, volume or container was made
