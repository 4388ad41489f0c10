"""A FAKE Kubernetes API server for the k8s_traffic tests (no API server can run on these machines).

A small threaded HTTP server on 127.0.0.1 that implements only what the module uses, as the real one does it:
GET / POST (create) / PATCH (JSON merge patch, ``dryRun=All``) / DELETE of namespaced objects under
``/api/v1/.../services``, ``/apis/apps/v1/.../deployments``, ``/apis/networking.k8s.io/v1/.../ingresses`` and
``/apis/gateway.networking.k8s.io/v1/.../httproutes``; a ``resourceVersion`` bumped on every write; a PATCH whose
``metadata.resourceVersion`` is not the stored one answers 409 Conflict; a missing object 404; a request without the
bearer token 401. ``interfere(path, n)`` makes "someone else" edit the object just before each of the next ``n``
PATCHes of it (n < 0: every one), so the tests can prove the compare-and-set. It is a fake: it does not validate
objects against their schemas.

``Kube`` is what the tests use to seed and read objects: the same REST calls through the ``kubernetes`` package
against the fake, or against a real cluster when ``STRATA_K8S_KUBECONFIG`` names a kubeconfig (docs/traffic-cloud.md).
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config as k8s_config

TOKEN = "fake-api-token"  # noqa: S105 - the fake's own bearer token
REAL_CLUSTER_ENV = "STRATA_K8S_KUBECONFIG"
PATH_RE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[a-z0-9.-]+)/(?P<version>v[0-9a-z]+))/namespaces/(?P<ns>[^/]+)/"
    r"(?P<plural>services|deployments|ingresses|httproutes)(?:/(?P<name>[^/]+))?$"
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKubeApi:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 1000
        self.interference: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                fake.requests.append((self.command, self.path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._answer(401, status_body(401, "Unauthorized", "Unauthorized"))
                    return
                match = PATH_RE.match(url.path)
                if not match:
                    self._answer(404, status_body(404, "NotFound", f"the server could not find {url.path}"))
                    return
                body = json.loads(raw) if raw else None
                status, answer = fake.handle(self.command, url.path, match, body, query.get("dryRun") == ["All"])
                self._answer(status, answer)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle  # http.server's method names

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def interfere(self, path: str, count: int) -> None:
        with self.lock:
            self.interference[path] = count

    def handle(self, method: str, path: str, match: Any, body: Any, dry_run: bool) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if method == "POST":
                return self._create(path, match, body)
            obj = self.objects.get(path)
            if obj is None:
                return 404, status_body(404, "NotFound", f'{match["plural"]} "{match["name"]}" not found')
            if method == "GET":
                return 200, obj
            if method == "DELETE":
                del self.objects[path]
                return 200, status_body(200, "Success", "deleted")
            return self._patch(path, match, obj, body, dry_run)

    def _create(self, path: str, match: Any, body: Any) -> tuple[int, dict[str, Any]]:
        name = body["metadata"]["name"]
        key = f"{path}/{name}"
        if match["name"] or key in self.objects:
            return 409, status_body(409, "AlreadyExists", f"{name} already exists")
        obj = copy.deepcopy(body)
        obj["metadata"]["namespace"] = match["ns"]
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = obj
        return 201, obj

    def _patch(
        self, path: str, match: Any, obj: dict[str, Any], body: Any, dry_run: bool
    ) -> tuple[int, dict[str, Any]]:
        left = self.interference.get(path, 0)
        if left:
            self.interference[path] = left - 1 if left > 0 else left
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)  # someone else wrote it
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return 409, status_body(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {match["plural"]} "{match["name"]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        patched = merge_patch(obj, body)
        if dry_run:
            return 200, patched
        self.version += 1
        patched["metadata"]["resourceVersion"] = str(self.version)
        self.objects[path] = patched
        return 200, patched

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=2)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def write_kubeconfig(path: Path, server: str, token: str = TOKEN) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": token}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
                "current-context": "fake",
            }
        )
    )
    return path


class Kube:
    """Seed and read objects with plain REST calls (the fake, or a real cluster)."""

    def __init__(self, kubeconfig: str, fake: FakeKubeApi | None) -> None:
        self.kubeconfig = kubeconfig
        self.fake = fake
        self.api = k8s_config.new_client_from_config(config_file=kubeconfig)

    @property
    def real(self) -> bool:
        return self.fake is None

    def _call(self, method: str, path: str, body: Any = None, content: str = "application/json") -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content
        m, url, headers, payload, post = self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(m, url, headers, payload, post, _request_timeout=10)
        response.read()
        return response.status, json.loads(response.data or b"{}")

    def create(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        status, answer = self._call("POST", collection, obj)
        assert status in (200, 201), (status, answer)
        return answer

    def get(self, path: str) -> dict[str, Any]:
        status, answer = self._call("GET", path)
        assert status == 200, (status, answer)
        return answer

    def patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        status, answer = self._call("PATCH", path, patch, "application/merge-patch+json")
        assert status == 200, (status, answer)
        return answer

    def delete(self, path: str) -> None:
        self._call("DELETE", path)


def real_cluster_kubeconfig() -> str | None:
    return os.environ.get(REAL_CLUSTER_ENV) or None
