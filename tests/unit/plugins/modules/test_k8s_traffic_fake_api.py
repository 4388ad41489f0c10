"""``strata.deploy.k8s_traffic`` against a FAKE Kubernetes API server (tests/unit/plugins/k8s_fake_api.py: threaded
HTTP on 127.0.0.1, resourceVersion conflicts, server-side dry run), reached through a kubeconfig like a real cluster.

The same tests run against a REAL cluster (kind, k3s) with the Gateway API CRDs installed when
``STRATA_K8S_KUBECONFIG`` names its kubeconfig (objects are created in namespace ``default`` with unique names and
deleted afterwards); only the tests that need the fake's injected concurrent edits are skipped then.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._k8s.client import (
    ingress_path,
    route_path,
    service_path,
)
from ansible_collections.strata.deploy.plugins.module_utils._k8s.routes import JOURNAL_ANNOTATION
from ansible_collections.strata.deploy.plugins.modules import k8s_traffic


def _load(name: str, path: Path) -> Any:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fake_api = _load("strata_k8s_fake_api", Path(__file__).resolve().parents[1] / "k8s_fake_api.py")
NS = "default"


class Objects:
    """One test's objects: Services stable/canary, an HTTPRoute with two rules, a canary Ingress."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube
        suffix = uuid.uuid4().hex[:6]
        self.stable, self.canary, self.route, self.ingress = (
            f"web-stable-{suffix}",
            f"web-canary-{suffix}",
            f"web-{suffix}",
            f"web-canary-ing-{suffix}",
        )
        self.created: list[str] = []
        for svc in (self.stable, self.canary):
            self._create(
                f"/api/v1/namespaces/{NS}/services",
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": svc},
                    "spec": {"ports": [{"port": 80}], "selector": {"app": svc}},
                },
                service_path(NS, svc),
            )
        self._create(
            f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes",
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": self.route},
                "spec": {
                    "parentRefs": [{"name": "gateway"}],
                    "rules": [
                        {
                            "backendRefs": [
                                {"name": self.stable, "port": 80, "weight": 100},
                                {"name": self.canary, "port": 80, "weight": 0},
                            ]
                        },
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                            "backendRefs": [{"name": self.stable, "port": 80}],
                        },
                    ],
                },
            },
            route_path(NS, self.route),
        )
        self._create(
            f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses",
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": self.ingress, "annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
                "spec": {
                    "ingressClassName": "nginx",
                    "rules": [
                        {
                            "host": "web.example",
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {"service": {"name": self.canary, "port": {"number": 80}}},
                                    }
                                ]
                            },
                        }
                    ],
                },
            },
            ingress_path(NS, self.ingress),
        )

    def _create(self, collection: str, obj: dict[str, Any], path: str) -> None:
        self.kube.create(collection, obj)
        self.created.append(path)

    @property
    def route_path(self) -> str:
        return route_path(NS, self.route)

    def weights(self, rule: int = 0) -> dict[str, int]:
        refs = self.kube.get(self.route_path)["spec"]["rules"][rule]["backendRefs"]
        return {ref["name"]: ref.get("weight", 1) for ref in refs}

    def cleanup(self) -> None:
        for path in reversed(self.created):
            self.kube.delete(path)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    real = fake_api.real_cluster_kubeconfig()
    if real:
        yield fake_api.Kube(real, None)
        return
    fake = fake_api.FakeKubeApi()
    try:
        config = fake_api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig", fake.url)
        yield fake_api.Kube(str(config), fake)
    finally:
        fake.close()


@pytest.fixture
def objs(kube: Any) -> Iterator[Objects]:
    objects = Objects(kube)
    try:
        yield objects
    finally:
        objects.cleanup()


def args(kube: Any, objs: Objects, **extra: Any) -> dict[str, Any]:
    return {"kubeconfig": kube.kubeconfig, "namespace": NS, "name": objs.route, **extra}


def needs_fake(kube: Any) -> None:
    if kube.real:
        pytest.skip("injects concurrent edits through the fake API server; not possible on a real cluster")


def test_fake_api_httproute_weights_set_compared_and_read_back(kube: Any, objs: Objects, run_module: Any) -> None:
    other_rule = objs.kube.get(objs.route_path)["spec"]["rules"][1]
    wanted = {objs.stable: 90, objs.canary: 10}

    first = run_module(k8s_traffic.main, args(kube, objs, backends=wanted), diff=True)
    second = run_module(k8s_traffic.main, args(kube, objs, backends=wanted))

    assert not first.failed, first.result
    assert first.result["changed"] is True and second.result["changed"] is False
    assert objs.weights() == wanted
    assert first.result["read_back"] == {objs.route: {s: {"weight": w, "state": "ready"} for s, w in wanted.items()}}
    assert objs.kube.get(objs.route_path)["spec"]["rules"][1] == other_rule  # the other rule is untouched
    after_rows = [line.split() for line in first.result["diff"]["after"].splitlines()]
    assert [f"{NS}/{objs.route}", objs.route, objs.canary, "10", "ready"] in after_rows
    assert second.result["patch"] is None


def test_fake_api_check_mode_is_a_server_side_dry_run(kube: Any, objs: Objects, run_module: Any) -> None:
    before = objs.kube.get(objs.route_path)

    run = run_module(k8s_traffic.main, args(kube, objs, backends={objs.canary: 50}), check=True)

    assert not run.failed, run.result
    assert run.result["changed"] is True
    assert run.result["read_back"][objs.route][objs.canary]["weight"] == 50  # the server's dry-run answer
    assert objs.kube.get(objs.route_path) == before
    if not kube.real:
        assert any(m == "PATCH" and "dryRun=All" in p for m, p in kube.fake.requests)


def test_fake_api_concurrent_edit_is_recomputed(kube: Any, objs: Objects, run_module: Any) -> None:
    needs_fake(kube)
    kube.fake.interfere(objs.route_path, 1)

    run = run_module(k8s_traffic.main, args(kube, objs, backends={objs.stable: 75, objs.canary: 25}))

    assert not run.failed, run.result
    assert run.result["conflicts"] == 1
    assert objs.weights() == {objs.stable: 75, objs.canary: 25}


def test_fake_api_persistent_conflict_fails_and_writes_nothing(kube: Any, objs: Objects, run_module: Any) -> None:
    needs_fake(kube)
    kube.fake.interfere(objs.route_path, -1)
    try:
        run = run_module(k8s_traffic.main, args(kube, objs, backends={objs.canary: 25}, conflict_retries=2))
    finally:
        kube.fake.interfere(objs.route_path, 0)

    assert run.failed
    assert "HTTP 409" in run.result["msg"] and "kept changing" in run.result["msg"]
    assert "3 conflicts" in run.result["msg"]
    assert objs.weights() == {objs.stable: 100, objs.canary: 0}


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        ({"nope": 5}, "has no backendRef nope"),
        ({"CANARY": 1_000_001}, "expected an integer weight between 0 and 1000000"),
        ({"STABLE": 0, "CANARY": 0}, "would get weight 0"),
    ],
)
def test_fake_api_bad_input_changes_nothing(
    kube: Any, objs: Objects, run_module: Any, backends: dict[str, int], expected: str
) -> None:
    names = {"CANARY": objs.canary, "STABLE": objs.stable}
    before = objs.kube.get(objs.route_path)

    run = run_module(k8s_traffic.main, args(kube, objs, backends={names.get(k, k): v for k, v in backends.items()}))

    assert run.failed
    assert expected in run.result["msg"], run.result["msg"]
    assert objs.kube.get(objs.route_path) == before


def test_fake_api_missing_service_is_refused_before_shifting(kube: Any, objs: Objects, run_module: Any) -> None:
    objs.kube.delete(service_path(NS, objs.canary))
    objs.created.remove(service_path(NS, objs.canary))

    run = run_module(k8s_traffic.main, args(kube, objs, backends={objs.canary: 10}))

    assert run.failed
    assert f"Service(s) {objs.canary} that do not exist" in run.result["msg"]
    assert objs.weights() == {objs.stable: 100, objs.canary: 0}


def test_fake_api_missing_route_and_missing_kubeconfig(
    kube: Any, objs: Objects, run_module: Any, tmp_path: Path
) -> None:
    gone = run_module(k8s_traffic.main, args(kube, objs, name="no-such-route", backends={"a": 1}))
    no_config = run_module(
        k8s_traffic.main, args(kube, objs, kubeconfig=str(tmp_path / "missing"), backends={objs.canary: 1})
    )

    assert gone.failed and "HTTP 404" in gone.result["msg"] and "no-such-route" in gone.result["msg"]
    assert no_config.failed and "kubeconfig: cannot load" in no_config.result["msg"]
    assert objs.weights() == {objs.stable: 100, objs.canary: 0}


def test_fake_api_ingress_nginx_canary_annotations(kube: Any, objs: Objects, run_module: Any) -> None:
    base = {"kubeconfig": kube.kubeconfig, "namespace": NS, "name": objs.ingress, "mode": "ingress_nginx"}
    wanted = dict(base, canary_weight=25, canary_header="X-Canary", canary_header_value="always")

    first = run_module(k8s_traffic.main, wanted)
    second = run_module(k8s_traffic.main, wanted)
    bad = run_module(k8s_traffic.main, dict(base, canary_weight=101))

    assert not first.failed, first.result
    assert first.result["changed"] is True and second.result["changed"] is False
    annotations = objs.kube.get(ingress_path(NS, objs.ingress))["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "25"
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert bad.failed and "canary_weight: expected an integer between 0 and 100" in bad.result["msg"]
    assert objs.kube.get(ingress_path(NS, objs.ingress))["metadata"]["annotations"] == annotations


def test_fake_api_journal_is_an_annotation_written_with_the_weights(kube: Any, objs: Objects, run_module: Any) -> None:
    journal = json.dumps({"rollout_id": "web-7", "phase": "running", "step_index": 0})

    run = run_module(k8s_traffic.main, args(kube, objs, backends={objs.canary: 10}, journal=journal))

    assert not run.failed, run.result
    route = objs.kube.get(objs.route_path)
    assert json.loads(route["metadata"]["annotations"][JOURNAL_ANNOTATION]) == json.loads(journal)
    assert objs.weights()[objs.canary] == 10
    assert JOURNAL_ANNOTATION not in json.dumps(run.result["patch"])
