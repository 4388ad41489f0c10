"""The Molecule `check` step fails when check mode predicts a change (tests/callbacks/strata_check_unchanged.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = """
- name: One task that would change a file
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write a file
      ansible.builtin.copy:
        content: "x\\n"
        dest: "{{ target }}"
        mode: "0644"
"""


def _run(tmp_path: Path, check: bool, target: Path) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(os.environ,
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "tests" / "callbacks"),
               ANSIBLE_CALLBACKS_ENABLED="strata_check_unchanged",
               ANSIBLE_CONFIG=str(tmp_path / "none.cfg"),
               STRATA_CHECK_UNCHANGED="1")
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", f"target={target}", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)]
    if check:
        cmd.append("--check")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_predicted_change_fails_the_check_run(tmp_path: Path) -> None:
    proc = _run(tmp_path, check=True, target=tmp_path / "file")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "changed: localhost: Write a file" in proc.stdout + proc.stderr
    assert not (tmp_path / "file").exists()


def test_converged_state_passes_the_check_run(tmp_path: Path) -> None:
    target = tmp_path / "file"
    assert _run(tmp_path, check=False, target=target).returncode == 0  # a real run may change things
    proc = _run(tmp_path, check=True, target=target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
