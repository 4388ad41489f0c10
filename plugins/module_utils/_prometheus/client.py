# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus HTTP API client and the canary-vs-baseline metric gate (standard library only).

Client: one wrapper per API call (``query``: ``/api/v1/query``, an instant query). Every request has a timeout
(also sent to Prometheus as the evaluation timeout); only transient failures are retried (refused or reset
connection, timeout, HTTP 429/502/503/504) with a bounded, jittered exponential backoff. Everything else raises
a typed error at once: ``PrometheusQueryError`` (HTTP 400/422, with Prometheus's own error text),
``PrometheusAuthError`` (401/403), ``PrometheusTLSError`` (certificate not trusted, TLS on a plain port),
``PrometheusResponseError`` (an answer that is not what a gate can use). ``PrometheusUnreachableError`` is
raised once the retries are spent. HTTP basic auth is sent only to the configured host (not on redirects).

Gate: ``build_gate`` validates a gate description into ``Gate``/``Check`` values; ``evaluate_gate`` runs every
query for the canary (and the baseline where asked) at ONE evaluation time and decides ``pass``, ``fail`` or
``inconclusive``. Queries are templates with ``${version}`` (the canary's or the baseline's version), ``${window}``
and the names of ``query_vars``: ``$``-placeholders because Ansible would render ``{{ ... }}`` itself before the
module sees it, and PromQL never uses ``$``. ``$$`` is a literal ``$``.
"""

from __future__ import annotations

import base64
import errno
import json
import math
import random
import re
import socket
import ssl
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
TRANSIENT_HTTP = frozenset({429, 502, 503, 504})
TRANSIENT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ETIMEDOUT, errno.EAGAIN})
MAX_ANSWER = 16 * 1024 * 1024
MAX_GET_URL = 6000  # longer queries are POSTed (form body) to stay under proxies' URL limits
_TIMEOUTS = (TimeoutError, socket.timeout)  # distinct classes before Python 3.10
_HTTP_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 422: "Unprocessable"}


class PrometheusError(Exception):
    """Base class of the errors of this module."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(message)


class PrometheusUnreachableError(PrometheusError):
    """No usable answer after every retry (connection refused/reset, timeouts, HTTP 429/502/503/504)."""


class PrometheusAuthError(PrometheusError):
    """HTTP 401 or 403: the credentials are missing, wrong, or not allowed."""

    def __init__(self, url: str, status: int, message: str) -> None:
        self.status = status
        super().__init__(url, message)


class PrometheusTLSError(PrometheusError):
    """The TLS handshake failed (untrusted certificate, wrong host name, TLS spoken to a plain HTTP port)."""


class PrometheusQueryError(PrometheusError):
    """Prometheus refused the query (HTTP 400 ``bad_data`` or 422 ``execution``); ``error`` is its own text."""

    def __init__(self, url: str, query: str, status: int, error_type: str, error: str) -> None:
        self.query = query
        self.status = status
        self.error_type = error_type
        self.error = error
        super().__init__(url, f"Prometheus rejected the query {query!r} (HTTP {status} {error_type}): {error}")


class PrometheusResponseError(PrometheusError):
    """An answer this client cannot use: not the Prometheus API, or a result a gate cannot reduce to one number."""


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class QueryResult:
    """The answer to one instant query."""

    query: str
    result_type: str
    series: tuple[Series, ...]
    warnings: tuple[str, ...] = ()

    def single_value(self, url: str = "") -> float | None:
        """The one number of a scalar or a one-series vector; ``None`` for no series or NaN (no data)."""
        if self.result_type not in ("vector", "scalar"):
            raise PrometheusResponseError(
                url, f"query {self.query!r} returned a {self.result_type}: a gate needs an instant vector or a scalar"
            )
        if len(self.series) > 1:
            shown = ", ".join(_labels_text(s.labels) for s in self.series[:3])
            raise PrometheusResponseError(
                url,
                f"query {self.query!r} returned {len(self.series)} series ({shown}"
                f"{', ...' if len(self.series) > 3 else ''}): a gate needs exactly one number, aggregate it with "
                "sum(), max() or avg()",
            )
        if not self.series or math.isnan(self.series[0].value):
            return None
        return self.series[0].value


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _float(raw: Any, where: str, url: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise PrometheusResponseError(url, f"{where}: expected a number, got {raw!r}") from None


def parse_query_answer(query: str, answer: Any, url: str = "") -> QueryResult:
    """A ``QueryResult`` from the decoded JSON of a successful ``/api/v1/query`` answer."""
    if not isinstance(answer, Mapping) or answer.get("status") != "success" or not isinstance(answer.get("data"), dict):
        raise PrometheusResponseError(url, f"not a Prometheus query answer: {str(answer)[:200]!r}")
    data = answer["data"]
    result_type = data.get("resultType")
    result = data.get("result")
    warnings = tuple(str(w) for w in answer.get("warnings") or ())
    if result_type == "vector" and isinstance(result, list):
        series = []
        for item in result:
            if not isinstance(item, Mapping) or not isinstance(item.get("value"), list) or len(item["value"]) != 2:
                raise PrometheusResponseError(url, f"unexpected vector element {item!r}")
            series.append(Series(dict(item.get("metric") or {}), _float(item["value"][1], "vector value", url)))
        return QueryResult(query, result_type, tuple(series), warnings)
    if result_type == "scalar" and isinstance(result, list) and len(result) == 2:
        return QueryResult(query, result_type, (Series({}, _float(result[1], "scalar value", url)),), warnings)
    if result_type in ("matrix", "string"):
        return QueryResult(query, result_type, (), warnings)
    raise PrometheusResponseError(url, f"unexpected result type {result_type!r} in {str(answer)[:200]!r}")


def _is_transient(reason: Any) -> bool:
    if isinstance(reason, (*_TIMEOUTS, ConnectionResetError, ConnectionRefusedError)):
        return True
    if isinstance(reason, socket.gaierror):
        return reason.errno == socket.EAI_AGAIN
    return isinstance(reason, OSError) and reason.errno in TRANSIENT_ERRNOS


def _error_text(body: bytes) -> tuple[str, str]:
    """``(errorType, error)`` from a Prometheus error body (or the start of a non-JSON body)."""
    text = body.decode("utf-8", errors="replace")
    try:
        answer = json.loads(text)
    except ValueError:
        return "", text.strip()[:300]
    if isinstance(answer, Mapping):
        return str(answer.get("errorType") or ""), str(answer.get("error") or text.strip()[:300])
    return "", text.strip()[:300]


class PrometheusClient:
    """HTTP API client for one Prometheus server."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_path: str | None = None,
        validate_certs: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        parsed = urllib.parse.urlsplit(url or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TrafficSpecError("url", f"expected an http:// or https:// URL of the Prometheus server, got {url!r}")
        if parsed.query or parsed.fragment:
            raise TrafficSpecError("url", f"expected a base URL without '?query' or '#fragment', got {url!r}")
        if timeout is None or timeout <= 0:
            raise TrafficSpecError("timeout", f"expected a number of seconds above 0, got {timeout!r}")
        if retries is None or retries < 0:
            raise TrafficSpecError("retries", f"expected 0 or more, got {retries!r}")
        if (username is None) != (password is None):
            raise TrafficSpecError("username", "expected both username and password for basic auth, or neither")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.ca_path = ca_path
        self.validate_certs = validate_certs
        self._sleep = sleep
        self._jitter = jitter
        self._auth = None
        if username is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._auth = f"Basic {token}"
        handlers: list[urllib.request.BaseHandler] = []
        if parsed.scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=self._tls_context()))
        self._opener = urllib.request.build_opener(*handlers)

    def _tls_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise TrafficSpecError("ca_path", f"cannot load CA file {self.ca_path}: {exc}") from None
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _delay(self, attempt: int) -> float:
        cap = min(self.max_backoff, self.backoff * (2**attempt))
        return cap / 2 + self._jitter() * cap / 2

    def _request(self, path: str, fields: Mapping[str, str]) -> urllib.request.Request:
        body = urllib.parse.urlencode(fields)
        headers = {"Accept": "application/json", "User-Agent": "strata.deploy-prometheus-gate"}
        if len(self.url) + len(path) + len(body) + 1 <= MAX_GET_URL:
            url = f"{self.url}{path}?{body}"
            request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310 - http(s) checked in __init__
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            url = f"{self.url}{path}"
            data = body.encode()
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - as above
        if self._auth:
            request.add_unredirected_header("Authorization", self._auth)  # never sent to a redirect target
        return request

    def _tls_error(self, reason: BaseException) -> PrometheusTLSError:
        if isinstance(reason, ssl.SSLCertVerificationError):
            hint = (
                "set ca_path to the PEM file of the CA that signed its certificate"
                if self.validate_certs
                else "the certificate was not verified"
            )
            return PrometheusTLSError(self.url, f"the TLS certificate of {self.url} is not trusted ({reason}): {hint}")
        return PrometheusTLSError(
            self.url, f"TLS handshake with {self.url} failed ({reason}): does the server speak https on that port?"
        )

    def _http_error(self, status: int, body: bytes, query: str, final_url: str) -> PrometheusError:
        error_type, error = _error_text(body)
        reason = _HTTP_REASONS.get(status, "")
        if status in (400, 422):
            return PrometheusQueryError(self.url, query, status, error_type or reason.lower(), error)
        if status in (401, 403):
            what = "credentials" if status == 401 else "user"
            given = "the username/password given" if self._auth else "no username/password (set username and password)"
            moved = f" (after a redirect to {final_url}, where credentials are not sent)" if final_url else ""
            return PrometheusAuthError(
                self.url,
                status,
                f"Prometheus at {self.url} answered HTTP {status} {reason}{moved}: check the {what}"
                f" ({given}); its answer: {error}",
            )
        if status == 404:
            return PrometheusResponseError(
                self.url,
                f"HTTP 404 from {self.url}: is url the base URL of Prometheus (with its path prefix, without /api/v1)?",
            )
        return PrometheusResponseError(self.url, f"HTTP {status} from {self.url}: {error_type} {error}".rstrip())

    def _get_json(self, path: str, fields: Mapping[str, str], query: str) -> Any:
        """The decoded JSON answer; retries transient failures only."""
        attempt = 0
        while True:
            request = self._request(path, fields)
            failure: str
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    body = response.read(MAX_ANSWER + 1)
                if len(body) > MAX_ANSWER:
                    raise PrometheusResponseError(self.url, f"the answer to {query!r} exceeds {MAX_ANSWER} bytes")
                try:
                    return json.loads(body.decode("utf-8"))
                except ValueError:
                    raise PrometheusResponseError(
                        self.url, f"{self.url}{path} did not answer JSON: is url a Prometheus server? ({body[:120]!r})"
                    ) from None
            except urllib.error.HTTPError as exc:
                body = exc.read(64 * 1024) if exc.fp else b""
                exc.close()
                final = exc.geturl() if exc.geturl() and not exc.geturl().startswith(self.url + path) else ""
                if exc.code not in TRANSIENT_HTTP:
                    raise self._http_error(exc.code, body, query, final) from None
                failure = f"HTTP {exc.code} {_error_text(body)[1]}".strip()
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, ssl.SSLError):
                    raise self._tls_error(reason) from None
                if not _is_transient(reason):
                    message = f"cannot reach Prometheus at {self.url}: {reason}"
                    raise PrometheusUnreachableError(self.url, message) from None
                failure = str(reason)
            except ssl.SSLError as exc:
                raise self._tls_error(exc) from None
            except (*_TIMEOUTS, ConnectionError, HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt >= self.retries:
                raise PrometheusUnreachableError(
                    self.url,
                    f"no answer from Prometheus at {self.url} after {attempt + 1} attempt(s) (timeout "
                    f"{self.timeout:g}s each); last error: {failure}: check that it runs and that this host can "
                    "reach it",
                )
            self._sleep(self._delay(attempt))
            attempt += 1

    # -- one wrapper per API call ----------------------------------------------------------------

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        """An instant query evaluated at ``at`` (Unix seconds; now when ``None``)."""
        if not isinstance(promql, str) or not promql.strip():
            raise TrafficSpecError("query", f"expected a PromQL expression, got {promql!r}")
        fields = {"query": promql, "timeout": f"{self.timeout:g}s"}
        if at is not None:
            fields["time"] = f"{at:.3f}"
        answer = self._get_json("/api/v1/query", fields, promql)
        if isinstance(answer, Mapping) and answer.get("status") == "error":
            raise PrometheusQueryError(
                self.url, promql, 200, str(answer.get("errorType") or ""), str(answer.get("error") or "")
            )
        return parse_query_answer(promql, answer, self.url)


# -- the metric gate -------------------------------------------------------------------------------

PASS = "pass"  # noqa: S105 - a verdict, not a password
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
NO_DATA = "no_data"
NO_DATA_POLICIES = (PASS, FAIL, INCONCLUSIVE)
HIGHER = "higher"
LOWER = "lower"
CHECK_KEYS = frozenset({"name", "query", "max", "min", "compare_to_baseline", "tolerance", "worse"})
RESERVED = frozenset({"version", "window"})
_DURATION = re.compile(r"(\d+(ms|s|m|h|d|w|y))+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_VERSION = re.compile(r"[\"'`\\\n\r{}]")


@dataclass(frozen=True)
class Check:
    """One metric: the canary's value must be within ``max``/``min`` and, with ``compare_to_baseline``, not worse
    than the baseline's value by more than ``tolerance`` (``worse`` says which direction is worse)."""

    name: str
    query: str
    max: float | None = None
    min: float | None = None
    compare_to_baseline: bool = False
    tolerance: float = 0.0
    worse: str = HIGHER


@dataclass(frozen=True)
class Gate:
    checks: tuple[Check, ...]
    canary_version: str | None = None
    baseline_version: str | None = None
    window: str = "5m"
    variables: Mapping[str, str] = field(default_factory=dict)
    samples_query: str | None = None
    min_samples: float = 1
    no_data: str = INCONCLUSIVE

    @property
    def needs_baseline(self) -> bool:
        return any(check.compare_to_baseline for check in self.checks)


@dataclass(frozen=True)
class CheckResult:
    check: Check
    query: str
    value: float | None
    status: str
    detail: str
    baseline_query: str | None = None
    baseline_value: float | None = None
    limit: float | None = None  # the baseline-derived limit (baseline +/- tolerance)

    def as_dict(self) -> dict[str, Any]:
        c = self.check
        return {
            "name": c.name,
            "status": self.status,
            "detail": self.detail,
            "query": self.query,
            "value": json_number(self.value),
            "max": c.max,
            "min": c.min,
            "compare_to_baseline": c.compare_to_baseline,
            "tolerance": c.tolerance,
            "worse": c.worse,
            "baseline_query": self.baseline_query,
            "baseline_value": json_number(self.baseline_value),
            "baseline_limit": json_number(self.limit),
        }


@dataclass(frozen=True)
class GateReport:
    verdict: str
    reason: str
    checks: tuple[CheckResult, ...]
    samples: Mapping[str, Any]
    no_data: bool
    evaluated_at: float
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == PASS

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "reason": self.reason,
            "no_data": self.no_data,
            "checks": [result.as_dict() for result in self.checks],
            "samples": dict(self.samples),
            "evaluated_at": self.evaluated_at,
        }


def json_number(value: float | None) -> float | str | None:
    """``value`` for a JSON result: infinities as the strings ``+Inf``/``-Inf`` (JSON has no infinity)."""
    if value is not None and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def placeholders(template: str) -> set[str]:
    """The ``$name``/``${name}`` placeholders of ``template`` (``$$`` is a literal ``$``)."""
    names = set()
    for match in string.Template.pattern.finditer(template):
        if match.group("invalid") is not None:
            raise ValueError(f"invalid placeholder at position {match.start('invalid')}: use ${{name}} or $$")
        name = match.group("named") or match.group("braced")
        if name:
            names.add(name)
    return names


def _number(value: Any, param: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise TrafficSpecError(param, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TrafficSpecError(param, f"expected a number, got {value!r}")
    return float(value)


def _check_from(raw: Any, param: str) -> Check:
    if not isinstance(raw, Mapping):
        raise TrafficSpecError(param, f"expected a dict with name, query and max/min, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in CHECK_KEYS)
    if unknown:
        raise TrafficSpecError(param, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(CHECK_KEYS))}")
    name, query = raw.get("name"), raw.get("query")
    if not isinstance(name, str) or not name.strip():
        raise TrafficSpecError(f"{param}.name", f"expected a non-empty name, got {name!r}")
    if not isinstance(query, str) or not query.strip():
        raise TrafficSpecError(f"{param}.query", f"expected a PromQL expression, got {query!r}")
    high, low = _number(raw.get("max"), f"{param}.max"), _number(raw.get("min"), f"{param}.min")
    compare = raw.get("compare_to_baseline") or False
    if not isinstance(compare, bool):
        raise TrafficSpecError(f"{param}.compare_to_baseline", f"expected true or false, got {compare!r}")
    tolerance = _number(raw.get("tolerance"), f"{param}.tolerance") or 0.0
    if tolerance < 0:
        raise TrafficSpecError(f"{param}.tolerance", f"expected 0 or more, got {tolerance!r}")
    if high is None and low is None and not compare:
        raise TrafficSpecError(param, f"check {name!r} has nothing to check: set max, min and/or compare_to_baseline")
    if high is not None and low is not None and high < low:
        raise TrafficSpecError(param, f"check {name!r}: max {high:g} is below min {low:g}")
    worse = raw.get("worse") or (LOWER if low is not None and high is None else HIGHER)
    if worse not in (HIGHER, LOWER):
        raise TrafficSpecError(f"{param}.worse", f"expected {HIGHER} or {LOWER}, got {worse!r}")
    return Check(name.strip(), query, high, low, compare, tolerance, worse)


def _version(value: Any, param: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or _BAD_VERSION.search(value):
        raise TrafficSpecError(param, f"expected a version without quotes, backslashes, braces or newlines: {value!r}")
    return value


def _shortcut_checks(
    success_rate: tuple[str | None, Any, Any], latency: tuple[str | None, Any, Any], compare: bool
) -> list[Check]:
    """The checks of ``success_rate_query`` (higher is better) and ``latency_query`` (lower is better)."""
    checks = []
    for name, (query, threshold, tolerance), bound, worse, needed in (
        ("success_rate", success_rate, "min", LOWER, "min_success_rate"),
        ("latency", latency, "max", HIGHER, "max_latency"),
    ):
        if not query:
            continue
        if threshold is None and not compare:
            raise TrafficSpecError(needed, f"set it (or compare_to_baseline) to check {name}_query")
        raw = {"name": name, "query": query, bound: threshold, "worse": worse, "compare_to_baseline": compare,
               "tolerance": tolerance}  # fmt: skip
        checks.append(_check_from(raw, f"{name}_query"))
    return checks


def _variables(query_vars: Mapping[str, Any] | None) -> dict[str, str]:
    variables: dict[str, str] = {}
    for key, value in (query_vars or {}).items():
        if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key) or key in RESERVED:
            raise TrafficSpecError(f"query_vars.{key}", "expected an identifier other than version and window")
        if value is None or isinstance(value, (Mapping, list)):
            raise TrafficSpecError(f"query_vars.{key}", f"expected a string or a number, got {value!r}")
        variables[key] = str(value)
    return variables


def _check_templates(gate: Gate) -> None:
    """Every placeholder is known, versions are given where used, baseline comparisons can differ."""
    known = RESERVED | set(gate.variables)
    templates = [(check.name, check.query, check.compare_to_baseline) for check in gate.checks]
    if gate.samples_query:
        templates.append(("samples_query", gate.samples_query, False))
    for name, template, compare in templates:
        try:
            used = placeholders(template)
        except ValueError as exc:
            raise TrafficSpecError(name, f"{exc} in {template!r}") from None
        unknown = sorted(used - known)
        if unknown:
            listed = ", ".join("${" + u + "}" for u in unknown)
            raise TrafficSpecError(name, f"unknown placeholder(s) {listed}: define them in query_vars")
        if "version" in used and gate.canary_version is None:
            raise TrafficSpecError("canary_version", f"required: {name} uses ${{version}}")
        if compare and "version" not in used:
            raise TrafficSpecError(
                name, "compare_to_baseline needs ${version} in the query, so the canary and the baseline are two series"
            )
        if compare and gate.baseline_version is None:
            raise TrafficSpecError("baseline_version", f"required: {name} compares the canary with the baseline")
    if gate.needs_baseline and gate.canary_version == gate.baseline_version:
        canary = gate.canary_version
        raise TrafficSpecError(
            "baseline_version", f"expected another version than the canary's ({canary!r}) to compare with"
        )


def build_gate(
    *,
    queries: Sequence[Any] | None = None,
    success_rate_query: str | None = None,
    min_success_rate: Any = None,
    success_rate_tolerance: Any = 0.0,
    latency_query: str | None = None,
    max_latency: Any = None,
    latency_tolerance: Any = 0.0,
    compare_to_baseline: bool = False,
    canary_version: Any = None,
    baseline_version: Any = None,
    window: str = "5m",
    query_vars: Mapping[str, Any] | None = None,
    samples_query: str | None = None,
    min_samples: Any = 1,
    no_data: str = INCONCLUSIVE,
) -> Gate:
    """Validate a gate description; every error names the parameter."""
    checks = _shortcut_checks(
        (success_rate_query, min_success_rate, success_rate_tolerance),
        (latency_query, max_latency, latency_tolerance),
        compare_to_baseline,
    )
    if queries is not None and (isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence)):
        raise TrafficSpecError("queries", f"expected a list of checks, got {type(queries).__name__}")
    checks.extend(_check_from(raw, f"queries[{index}]") for index, raw in enumerate(queries or ()))
    if not checks:
        raise TrafficSpecError("queries", "expected at least one of queries, success_rate_query or latency_query")
    names = [check.name for check in checks]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise TrafficSpecError("queries", f"check name(s) used twice: {', '.join(twice)}")
    if not isinstance(window, str) or not _DURATION.fullmatch(window):
        raise TrafficSpecError("window", f"expected a Prometheus duration such as 5m or 1h30m, got {window!r}")
    if no_data not in NO_DATA_POLICIES:
        raise TrafficSpecError("no_data", f"expected one of {', '.join(NO_DATA_POLICIES)}, got {no_data!r}")
    samples_min = _number(min_samples, "min_samples")
    if samples_min is None or samples_min < 0:
        raise TrafficSpecError("min_samples", f"expected a number of 0 or more, got {min_samples!r}")
    if samples_query is not None and (not isinstance(samples_query, str) or not samples_query.strip()):
        raise TrafficSpecError("samples_query", f"expected a PromQL expression, got {samples_query!r}")
    gate = Gate(
        checks=tuple(checks),
        canary_version=_version(canary_version, "canary_version"),
        baseline_version=_version(baseline_version, "baseline_version"),
        window=window,
        variables=_variables(query_vars),
        samples_query=samples_query or None,
        min_samples=samples_min,
        no_data=no_data,
    )
    _check_templates(gate)
    return gate


def render(template: str, gate: Gate, version: str | None) -> str:
    """``template`` with its placeholders filled for ``version`` (the canary's or the baseline's)."""
    values = dict(gate.variables, window=gate.window)
    if version is not None:
        values["version"] = version
    return string.Template(template).substitute(values)


def judge(check: Check, value: float | None, baseline: float | None = None) -> tuple[str, str, float | None]:
    """``(status, detail, baseline_limit)`` of one check (thresholds are inclusive)."""
    if value is None:
        return NO_DATA, "no data for the canary (empty result or NaN)", None
    problems: list[str] = []
    fine: list[str] = []
    v = _fmt(value)
    if check.max is not None:
        over = value > check.max
        (problems if over else fine).append(f"{v} {'>' if over else '<='} max {_fmt(check.max)}")
    if check.min is not None:
        under = value < check.min
        (problems if under else fine).append(f"{v} {'<' if under else '>='} min {_fmt(check.min)}")
    limit = None
    if check.compare_to_baseline:
        if baseline is None:
            if problems:
                return FAIL, "; ".join(problems) + " (no data for the baseline)", None
            return NO_DATA, "no data for the baseline (empty result or NaN)", None
        higher = check.worse == HIGHER
        limit = baseline + check.tolerance if higher else baseline - check.tolerance
        worse = value > limit if higher else value < limit
        sign, op = ("+", ">" if worse else "<=") if higher else ("-", "<" if worse else ">=")
        text = f"{v} {op} baseline {_fmt(baseline)} {sign} tolerance {_fmt(check.tolerance)}"
        (problems if worse else fine).append(text)
    if problems:
        return FAIL, "; ".join(problems), limit
    return PASS, "; ".join(fine), limit


def evaluate_gate(client: PrometheusClient, gate: Gate, *, at: float | None = None) -> GateReport:
    """Run the gate's queries at one evaluation time and decide."""
    moment = time.time() if at is None else at
    warnings: list[str] = []

    def measure(template: str, version: str | None) -> tuple[str, float | None]:
        text = render(template, gate, version)
        result = client.query(text, at=moment)
        warnings.extend(result.warnings)
        return text, result.single_value(client.url)

    samples: dict[str, Any] = {}
    short: list[str] = []
    if gate.samples_query:
        sides = [("canary", gate.canary_version)]
        if gate.needs_baseline:
            sides.append(("baseline", gate.baseline_version))
        for side, version in sides:
            text, count = measure(gate.samples_query, version)
            samples[side] = {"query": text, "value": json_number(count), "min": gate.min_samples}
            if count is None or count < gate.min_samples:
                short.append(f"{side} has {_fmt(count or 0)} sample(s) < min_samples {_fmt(gate.min_samples)}")

    results = []
    for check in gate.checks:
        query, value = measure(check.query, gate.canary_version)
        baseline_query, baseline = None, None
        if check.compare_to_baseline:
            baseline_query, baseline = measure(check.query, gate.baseline_version)
        status, detail, limit = judge(check, value, baseline)
        results.append(CheckResult(check, query, value, status, detail, baseline_query, baseline, limit))

    failed = [r for r in results if r.status == FAIL]
    empty = [r for r in results if r.status == NO_DATA]
    if short:
        verdict, no_data = gate.no_data, True
        reason = f"not enough data: {'; '.join(short)} (no_data={gate.no_data})"
    elif failed:
        verdict, no_data = FAIL, False
        reason = "; ".join(f"{r.check.name}: {r.detail}" for r in failed)
    elif empty:
        verdict, no_data = gate.no_data, True
        reason = "no data: " + "; ".join(f"{r.check.name}: {r.detail}" for r in empty) + f" (no_data={gate.no_data})"
    else:
        verdict, no_data = PASS, False
        reason = "; ".join(f"{r.check.name}: {r.detail}" for r in results)
    return GateReport(verdict, reason, tuple(results), samples, no_data, moment, tuple(warnings))


__all__ = [
    "Check",
    "CheckResult",
    "Gate",
    "GateReport",
    "PrometheusAuthError",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusTLSError",
    "PrometheusUnreachableError",
    "QueryResult",
    "build_gate",
    "evaluate_gate",
    "judge",
    "parse_query_answer",
    "placeholders",
    "render",
]
