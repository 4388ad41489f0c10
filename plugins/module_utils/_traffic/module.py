# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glue shared by the traffic modules: argument spec pieces, desired-state building, results, errors.

Every ``*_spec()`` builder returns exactly the options one fragment of ``plugins/doc_fragments/traffic.py``
documents (``tests/unit/plugins/modules/test_docs_match_spec.py`` checks that they agree), so a module that
uses ``extends_documentation_fragment: strata.deploy.traffic.haproxy`` builds its spec with
``haproxy_connection_spec()`` and the two cannot drift.

``failing`` turns the typed errors of the clients into one ``fail_json`` that says what was tried, what the
error was and what state was left behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._haproxy.client import (
    HAProxyCommandError,
    HAProxyConflictError,
    HAProxyError,
    HAProxySocketError,
    HAProxyVerifyError,
    parse_servers_state,
    state_from_records,
)
from ansible_collections.strata.deploy.plugins.module_utils._nginx.client import (
    NginxCommandError,
    NginxConfigError,
    NginxConflictError,
    NginxError,
    NginxVerifyError,
)
from ansible_collections.strata.deploy.plugins.module_utils._prometheus.client import PrometheusError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficError,
    TrafficSpecError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import (
    DRAIN,
    MAINT,
    READY,
    ServerSpec,
    ServerState,
    diff_text,
    parse_desired,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import (
    WeightScale,
    observed_split,
    server_weights,
)

if TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule
    from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import (
        Change,
        Desired,
        DiffRow,
        State,
    )

NOTHING_CHANGED = "nothing was changed"
ERRORS = (TrafficError, HAProxyError, NginxError, PrometheusError)

DEFAULT_HAPROXY_SOCKET = "/run/haproxy/admin.sock"
DEFAULT_HAPROXY_TIMEOUT = 5.0
DEFAULT_STATE_FILE = "/var/lib/haproxy/server-state"
NGINX_UPSTREAM_DIR = "/etc/nginx/strata/upstreams"  # roles/nginx/vars/main.yml: _nginx_upstream_dir
DEFAULT_NGINX_TEST = "nginx -t -q"
DEFAULT_NGINX_RELOAD = "nginx -s reload"
DEFAULT_NGINX_TIMEOUT = 30.0
DEFAULT_PROMETHEUS_TIMEOUT = 10.0
DEFAULT_PROMETHEUS_RETRIES = 3


# -- argument spec pieces (one per doc fragment) ---------------------------------------------------


def haproxy_connection_spec() -> dict[str, dict[str, Any]]:
    """Fragment ``strata.deploy.traffic.haproxy``."""
    return {
        "socket": {"type": "path", "default": DEFAULT_HAPROXY_SOCKET},
        "timeout": {"type": "float", "default": DEFAULT_HAPROXY_TIMEOUT},
    }


def nginx_file_spec() -> dict[str, dict[str, Any]]:
    """Fragment ``strata.deploy.traffic.nginx``."""
    return {"path": {"type": "path"}}


def nginx_commands_spec() -> dict[str, dict[str, Any]]:
    """Fragment ``strata.deploy.traffic.nginx_commands``."""
    return {
        "test_command": {"type": "str", "default": DEFAULT_NGINX_TEST},
        "reload_command": {"type": "str", "default": DEFAULT_NGINX_RELOAD},
        "timeout": {"type": "float", "default": DEFAULT_NGINX_TIMEOUT},
    }


def prometheus_connection_spec() -> dict[str, dict[str, Any]]:
    """Fragment ``strata.deploy.traffic.prometheus``."""
    return {
        "url": {"type": "str", "required": True},
        "username": {"type": "str"},
        "password": {"type": "str", "no_log": True},
        "ca_path": {"type": "path"},
        "validate_certs": {"type": "bool", "default": True},
        "timeout": {"type": "float", "default": DEFAULT_PROMETHEUS_TIMEOUT},
        "retries": {"type": "int", "default": DEFAULT_PROMETHEUS_RETRIES},
    }


def nginx_upstream_path(path: str | None, upstream: str | None) -> str:
    """``path``, or the file the nginx role writes for ``upstream``."""
    if path:
        return path
    if not upstream:
        raise TrafficSpecError("path", "expected path (the upstream include file) or upstream (to use its default)")
    return os.path.join(NGINX_UPSTREAM_DIR, f"{upstream}.conf")


# -- desired state from module arguments -----------------------------------------------------------


def _coerce_weights(raw: Any) -> Any:
    """Digit strings (a templated ``"26"``) as integers; anything else is left for ``parse_desired`` to judge."""
    if not isinstance(raw, Mapping):
        return raw
    coerced: dict[Any, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Mapping):
            coerced[key] = _coerce_weights(value)
        elif key == "weight" and isinstance(value, str) and value.strip().isdigit():
            coerced[key] = int(value.strip())
        else:
            coerced[key] = value
    return coerced


def _split_weights(percent: Any, pool: Any, scale: WeightScale, param: str) -> dict[str, int]:
    """Weights of one stable/canary pool, with errors naming ``param`` (``split.backends.app``)."""
    if not isinstance(pool, Mapping):
        raise TrafficSpecError(param, f"expected a dict with 'stable' and 'canary' lists, got {type(pool).__name__}")
    unknown = sorted(str(key) for key in pool if key not in ("stable", "canary"))
    if unknown:
        raise TrafficSpecError(param, f"unknown key(s) {', '.join(unknown)}; expected 'stable' and 'canary'")
    try:
        return server_weights(percent, pool.get("stable") or [], pool.get("canary") or [], scale)
    except TrafficSpecError as exc:
        where = "split.percent" if exc.param == "canary_percent" else f"{param}.{exc.param}"
        raise TrafficSpecError(where, exc.message) from None


def _merge(desired: Desired, pool: str, weights: Mapping[str, int], param: str) -> None:
    servers = desired.setdefault(pool, {})
    for server, weight in weights.items():
        spec = servers.get(server)
        if spec is not None and spec.weight is not None:
            raise TrafficSpecError(
                f"{param}.{pool}.{server}.weight",
                f"the weight of {server} is set both by servers (weight {spec.weight}) and by split "
                f"(weight {weight}); set it in one place (servers may still set its state)",
            )
        servers[server] = ServerSpec(weight=weight, state=None if spec is None else spec.state)


def haproxy_desired(servers: Any, split: Mapping[str, Any] | None, scale: WeightScale) -> Desired:
    """``servers`` (backend -> server -> {weight, state}) merged with the weights of ``split``."""
    desired = parse_desired(_coerce_weights(servers or {}), param="servers", max_weight=scale.max_weight)
    if split:
        backends = split.get("backends")
        if not isinstance(backends, Mapping) or not backends:
            raise TrafficSpecError("split.backends", "expected a dict of backend -> {stable: [...], canary: [...]}")
        for backend, pool in backends.items():
            where = f"split.backends.{backend}"
            _merge(desired, backend, _split_weights(split.get("percent"), pool, scale, where), "servers")
    if not desired:
        raise TrafficSpecError("servers", "expected at least one server in servers or split")
    return desired


def nginx_desired(upstream: str, servers: Any, split: Mapping[str, Any] | None, scale: WeightScale) -> Desired:
    """``servers`` (address -> {weight, state}) of ``upstream`` merged with the weights of ``split``."""
    desired = parse_desired({upstream: _coerce_weights(servers or {})}, param="servers")
    if split:
        pool = {"stable": split.get("stable"), "canary": split.get("canary")}
        _merge(desired, upstream, _split_weights(split.get("percent"), pool, scale, "split"), "servers")
    if not desired[upstream]:
        raise TrafficSpecError("servers", "expected at least one server in servers or split")
    return desired


# -- results ---------------------------------------------------------------------------------------


def state_result(state: Mapping[str, Mapping[str, ServerState]], pools: Sequence[str] | None = None) -> dict[str, Any]:
    """``{pool: {server: {weight, state}}}`` for the pools in ``pools`` (all when ``None``)."""
    names = list(state) if pools is None else [name for name in pools if name in state]
    return {name: {server: value.as_dict() for server, value in state[name].items()} for name in names}


def changes_result(changes: Sequence[Change]) -> list[dict[str, Any]]:
    return [
        {"backend": c.backend, "server": c.server, "before": c.before.as_dict(), "after": c.after.as_dict()}
        for c in changes
    ]


def diff_result(rows: Sequence[DiffRow], header: str) -> dict[str, str]:
    """Diff mode: the weight/state table of ``rows`` before and after (``header`` names the load balancer)."""
    return dict(diff_text(list(rows)), before_header=f"{header} (before)", after_header=f"{header} (after)")


def rows_after(rows: Sequence[DiffRow]) -> State:
    """The target state the diff rows lead to."""
    target: State = {}
    for row in rows:
        target.setdefault(row.backend, {})[row.server] = ServerState(row.after_weight, row.after_state)
    return target


def out_of_service(rows: Sequence[DiffRow]) -> list[tuple[str, str]]:
    """Servers that take no new connections once ``rows`` are applied (drain, maint or weight 0)."""
    return [(r.backend, r.server) for r in rows if r.after_state in (DRAIN, MAINT) or r.after_weight == 0]


def split_report(state: State, canary: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Per pool: the canary's share of the effective weight (servers not ``ready`` count as 0)."""
    report: dict[str, Any] = {}
    for pool, names in canary.items():
        if pool not in state:
            known = ", ".join(sorted(state)) or "none"
            raise TrafficSpecError(f"canary.{pool}", f"no such backend/upstream (known: {known})")
        if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
            raise TrafficSpecError(f"canary.{pool}", f"expected a list of server names, got {type(names).__name__}")
        missing = sorted(str(name) for name in names if name not in state[pool])
        if missing:
            known = ", ".join(sorted(state[pool]))
            raise TrafficSpecError(f"canary.{pool}", f"no such server(s) {', '.join(missing)} (known: {known})")
        effective = {s: (v.weight if v.state == READY else 0) for s, v in state[pool].items()}
        total = sum(effective.values())
        report[pool] = {
            "canary": list(names),
            "canary_weight": sum(effective[name] for name in set(names)),
            "total_weight": total,
            "percent": round(observed_split(effective, names), 4) if total else None,
        }
    return report


def state_file_stale(path: str, target: State) -> bool:
    """Whether the HAProxy server state file at ``path`` does not show ``target`` (missing or unreadable: stale)."""
    try:
        with open(path, encoding="utf-8") as handle:
            saved = state_from_records(parse_servers_state(handle.read(), path))
    except (OSError, HAProxyError, ValueError):
        return True
    return any(saved.get(b, {}).get(s) != value for b, servers in target.items() for s, value in servers.items())


# -- errors ----------------------------------------------------------------------------------------


def error_details(exc: BaseException) -> dict[str, Any]:
    """Machine-readable fields of a typed error, for the failed result (never secrets)."""
    details: dict[str, Any] = {"error_type": type(exc).__name__}
    if isinstance(exc, TrafficSpecError):
        details["param"] = exc.param
    if isinstance(exc, (HAProxyVerifyError, NginxVerifyError)):
        details["mismatches"] = [str(m) for m in exc.mismatches]
    if isinstance(exc, HAProxyCommandError):
        details["command"] = exc.command
        details["answer"] = exc.answer
    if isinstance(exc, NginxCommandError):
        details["command"] = exc.command
        details["output"] = exc.output
    return details


def error_text(exc: BaseException) -> str:
    """The error's message; an unknown target is named ``backend/server`` rather than by the core's ``desired.*``."""
    if isinstance(exc, UnknownTargetError) and exc.param.startswith("desired."):
        return f"{exc.param[len('desired.') :].replace('.', '/', 1)}: {exc.message}"
    return str(exc)


def fail(module: AnsibleModule, exc: BaseException, *, tried: str, left: str, **extra: Any) -> None:
    """``fail_json`` with ``<tried> failed: <error>; <left>`` and the error's details."""
    module.fail_json(msg=f"{tried} failed: {error_text(exc)}; {left}", **error_details(exc), **extra)


@contextlib.contextmanager
def failing(
    module: AnsibleModule,
    tried: str,
    left: str | Callable[[BaseException], tuple[str, dict[str, Any]]] = NOTHING_CHANGED,
) -> Iterator[None]:
    """Run the block; a typed error becomes ``fail`` (``left`` may compute the state left and extra fields)."""
    try:
        yield
    except ERRORS as exc:
        text, extra = left(exc) if callable(left) else (left, {})
        fail(module, exc, tried=tried, left=text, **extra)


def haproxy_left(read_state: Callable[[], State], pools: Sequence[str]) -> Callable[[BaseException], Any]:
    """What an HAProxy apply error left behind, with what the load balancer shows now (``read_back``)."""

    def left(exc: BaseException) -> tuple[str, dict[str, Any]]:
        if isinstance(exc, (TrafficSpecError, HAProxyConflictError)):
            return f"{NOTHING_CHANGED} (checked before sending)", {}
        try:
            now = {"read_back": state_result(read_state(), pools)}
        except ERRORS as again:
            return f"the state left could not be read back ({again}): check it with traffic_info", {}
        if isinstance(exc, HAProxyCommandError):
            return "read_back shows what HAProxy holds now", now
        if isinstance(exc, HAProxyVerifyError):
            return "HAProxy accepted every command but shows another state; read_back shows what it holds now", now
        if isinstance(exc, HAProxySocketError):
            return "some commands may have been applied; read_back shows what HAProxy holds now", now
        return "read_back shows what HAProxy holds now", now

    return left


def nginx_left(exc: BaseException) -> tuple[str, dict[str, Any]]:
    """What an nginx apply error left behind (the client's messages already say it for test/reload errors)."""
    if isinstance(exc, (TrafficSpecError, NginxConflictError)):
        return f"{NOTHING_CHANGED} (checked before writing)", {}
    if isinstance(exc, NginxConfigError):
        return "the previous file is in place and nginx still runs it", {}
    if isinstance(exc, NginxCommandError):
        return "the new file is in place; check that nginx runs it (nginx -T, its error log)", {}
    if isinstance(exc, NginxVerifyError):
        return "the new file was written and nginx reloaded, but reading it back shows another state", {}
    return "the upstream file may be partly updated; read it with traffic_info", {}
