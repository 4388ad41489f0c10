"""The ``strata.deploy.canary`` action with ``provider: kubernetes``, end to end through ``ansible-playbook`` (a
subprocess, bounded in time), against the FAKE Kubernetes API server of tests/unit/plugins/k8s_fake_api.py (or a real
cluster when ``STRATA_K8S_KUBECONFIG`` is set): an HTTPRoute's backendRef weights go 25% -> 100%, the journal is kept
as an annotation on the route, and a re-run finds it there. Assertions read the route back directly."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._k8s.routes import JOURNAL_ANNOTATION
from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr

REPO = Path(__file__).resolve().parents[4]
PLAYBOOK_TIMEOUT = 120.0


def _load(name: str, path: Path) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fake_api = _load("strata_k8s_fake_api", REPO / "tests/unit/plugins/k8s_fake_api.py")
objects = _load("strata_k8s_module_tests", REPO / "tests/unit/plugins/modules/test_k8s_traffic_fake_api.py")


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[Any]:
    real = fake_api.real_cluster_kubeconfig()
    if real:
        yield fake_api.Kube(real, None)
        return
    fake = fake_api.FakeKubeApi()
    try:
        yield fake_api.Kube(str(fake_api.write_kubeconfig(tmp_path / "kubeconfig", fake.url)), fake)
    finally:
        fake.close()


def run_playbook(tmp_path: Path, args: dict[str, Any]) -> tuple[dict[str, Any], str]:
    python = sys.executable
    hosts = {n: {"ansible_connection": "local", "ansible_python_interpreter": python} for n in ("localhost", "k8s-api")}
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp_path / "ansible.cfg").write_text(
        f"[defaults]\nretry_files_enabled = false\nlocal_tmp = {tmp_path}/al\nremote_tmp = {tmp_path}/ar\n"
    )
    result_file = tmp_path / "result.json"
    tasks = [
        {"name": "Run the canary on the HTTPRoute", "strata.deploy.canary": args, "register": "__canary"},
        {
            "name": "Keep the result",
            "ansible.builtin.copy": {"content": "{{ __canary | to_json }}", "dest": str(result_file)},
        },
    ]
    play = [{"name": "Canary", "hosts": "localhost", "gather_facts": False, "ignore_errors": True, "tasks": tasks}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / ".cache/collections"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PIPELINING="1",
    )
    binary = str(Path(sys.executable).parent / "ansible-playbook")
    done = subprocess.run(
        [binary, "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PLAYBOOK_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return json.loads(result_file.read_text()), output


def test_fake_api_k8s_canary_reaches_100_percent_with_journal_annotation(kube: Any, tmp_path: Path) -> None:
    objs = objects.Objects(kube)
    try:
        args = {
            "provider": "kubernetes",
            "load_balancers": ["k8s-api"],
            "provider_options": {"kubeconfig": kube.kubeconfig, "namespace": objects.NS},
            "backend": objs.route,
            "stable": [objs.stable],
            "canary": [objs.canary],
            "rollout_id": "web-9",
            "steps": [25, 100],
        }
        result, output = run_playbook(tmp_path, args)

        assert not result.get("failed"), result["msg"]
        assert result["status"] == "done"
        assert objs.weights() == {objs.stable: 0, objs.canary: 1_000_000}
        route = kube.get(objs.route_path)
        journal = jr.loads(route["metadata"]["annotations"][JOURNAL_ANNOTATION])
        assert journal.phase == "done" and journal.rollout_id == "web-9"
        assert [e.action for e in journal.events] == ["start", "step", "step", "done"]
        steps = [line for line in output.splitlines() if line.startswith("[canary web-9]") and "-> observed" in line]
        assert [line.split(": canary ")[1].split(" ")[0] for line in steps] == ["25%", "100%"]

        again = run_playbook(tmp_path, args)[0]
        assert again["decision"] == "nothing" and again["changed"] is False
    finally:
        objs.cleanup()
