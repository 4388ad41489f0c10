# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes client of the traffic modules: Gateway API ``HTTPRoute`` backendRef weights and ingress-nginx canary
annotations, with ``resourceVersion`` compare-and-set and server-side dry run.

- Authentication and TLS are the ``kubernetes`` package's (``kubernetes.config.new_client_from_config``: kubeconfig
  file and context, client certificates, tokens, exec plugins). Requests are plain REST calls on that
  ``ApiClient`` (``_request``): one GET or PATCH per call, a timeout on each, and the answer's status mapped to a
  typed error (``K8sNotFoundError`` 404, ``K8sConflictError`` 409, ``K8sAuthError`` 401/403, ``K8sApiError``).
- Every write is a JSON merge patch that carries the ``resourceVersion`` the change was computed from, so a
  concurrent edit makes the API server answer 409 instead of losing it; ``update`` re-reads, recomputes and
  tries again at most ``conflict_retries`` times, then raises ``K8sConflictError`` (nothing written).
- ``dry_run=True`` sends the same patch with ``dryRun=All``: the API server validates and answers with the object
  it would store, and stores nothing (check mode).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficError

try:
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError as Urllib3HTTPError
except ImportError:
    HAS_KUBERNETES = False

    class _MissingKubernetesError(Exception):
        """Stands for the kubernetes package's exceptions when it is not installed (nothing raises it)."""

    ApiException = ConfigException = Urllib3HTTPError = _MissingKubernetesError
else:
    HAS_KUBERNETES = True

if TYPE_CHECKING:
    from collections.abc import Callable

GATEWAY_GROUP = "gateway.networking.k8s.io"
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONFLICT_RETRIES = 3
MERGE_PATCH = "application/merge-patch+json"


class K8sError(TrafficError):
    """An error of the Kubernetes client; ``message`` says what was tried."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class K8sApiError(K8sError):
    def __init__(self, what: str, status: int, reason: str) -> None:
        self.status = status
        super().__init__(f"{what}: HTTP {status} {reason}".strip())


class K8sNotFoundError(K8sApiError):
    """The object does not exist (or the resource type is not served: Gateway API CRDs not installed)."""


class K8sConflictError(K8sApiError):
    """The object changed since it was read (409): its ``resourceVersion`` no longer matches."""


class K8sAuthError(K8sError):
    """No usable kubeconfig, or credentials the API server refuses (401/403)."""


def route_path(namespace: str, name: str, version: str = "v1") -> str:
    return f"/apis/{GATEWAY_GROUP}/{version}/namespaces/{_q(namespace)}/httproutes/{_q(name)}"


def ingress_path(namespace: str, name: str) -> str:
    return f"/apis/networking.k8s.io/v1/namespaces/{_q(namespace)}/ingresses/{_q(name)}"


def service_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{_q(namespace)}/services/{_q(name)}"


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{_q(namespace)}/deployments/{_q(name)}"


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


class K8sClient:
    """REST calls on a ``kubernetes`` ``ApiClient`` (``K8sClient.connect`` builds one from a kubeconfig)."""

    def __init__(self, api_client: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api = api_client
        self.timeout = timeout
        self.conflicts = 0

    @classmethod
    def connect(
        cls, *, kubeconfig: str | None = None, context: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> K8sClient:
        if not HAS_KUBERNETES:
            raise K8sError("the kubernetes Python package is required on the host that runs the module")
        try:
            api = k8s_config.new_client_from_config(config_file=kubeconfig, context=context)
        except (ConfigException, OSError, TypeError) as exc:
            where = kubeconfig or "the default kubeconfig (KUBECONFIG or ~/.kube/config)"
            raise K8sAuthError(
                f"kubeconfig: cannot load {where}{' context ' + context if context else ''}: {exc}; set kubeconfig "
                "(and context) to a readable kubeconfig file"
            ) from None
        return cls(api, timeout=timeout)

    # -- one wrapper per call --------------------------------------------------------------------

    def _request(
        self, method: str, path: str, what: str, *, body: Any = None, query: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH
        try:
            method_, url, headers, payload, post = self.api.param_serialize(
                method=method,
                resource_path=path,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(method_, url, headers, payload, post, _request_timeout=self.timeout)
            response.read()
            status = response.status
            data = response.data
        except ApiException as exc:
            status, data = exc.status or 0, (exc.body or b"")
        except (Urllib3HTTPError, OSError) as exc:
            raise K8sError(f"{what}: the API server did not answer ({exc})") from None
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if 200 <= status < 300:
            try:
                return json.loads(text) if text else {}
            except ValueError:
                raise K8sError(f"{what}: the API server's answer is not JSON") from None
        try:
            reason = str(json.loads(text).get("message") or "")
        except (ValueError, AttributeError):
            reason = text[:200]
        if status == 404:
            raise K8sNotFoundError(what, status, reason)
        if status == 409:
            raise K8sConflictError(what, status, reason)
        if status in (401, 403):
            raise K8sAuthError(f"{what}: HTTP {status} {reason}: check the kubeconfig's credentials and RBAC")
        raise K8sApiError(what, status, reason)

    def get(self, path: str, what: str) -> dict[str, Any]:
        return self._request("GET", path, f"reading {what}")

    def patch(self, path: str, what: str, patch: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        query = {"dryRun": "All"} if dry_run else None
        return self._request("PATCH", path, f"patching {what}", body=dict(patch), query=query)

    def service_exists(self, namespace: str, name: str) -> bool:
        try:
            self.get(service_path(namespace, name), f"Service {namespace}/{name}")
        except K8sNotFoundError:
            return False
        return True

    # -- compare-and-set -------------------------------------------------------------------------

    def update(
        self,
        path: str,
        what: str,
        compute: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        dry_run: bool = False,
        conflict_retries: int = DEFAULT_CONFLICT_RETRIES,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Read ``path``; ``compute(obj)`` returns the merge patch (``None``: nothing to change); send it with the
        ``resourceVersion`` it was computed from. Returns ``(object read, object written or None)``."""
        attempt = 0
        while True:
            current = self.get(path, what)
            patch = compute(current)
            if patch is None:
                return current, None
            version = (current.get("metadata") or {}).get("resourceVersion")
            guarded = dict(patch)
            guarded["metadata"] = dict(patch.get("metadata") or {}, resourceVersion=version)
            try:
                return current, self.patch(path, what, guarded, dry_run=dry_run)
            except K8sConflictError as exc:
                self.conflicts += 1
                attempt += 1
                if attempt > conflict_retries:
                    raise K8sConflictError(
                        f"patching {what}",
                        409,
                        f"{exc.message}; the object kept changing under this task ({attempt} conflicts): nothing "
                        "was written. Find what else edits it, then run again",
                    ) from None
