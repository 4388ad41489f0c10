"""prometheus_gate against a real Prometheus (TLS + basic auth) scraping fixed metrics (see conftest.py).

Versions: 1 baseline (0.5% errors, p99 ~0.24 s), 2 bad canary (3% errors, p99 ~0.9 s), 3 good canary (0.8% errors,
p99 ~0.24 s), 4 a canary with only 5 requests and no 5xx series. The metrics are constant counters, so the queries
read them directly instead of through rate().
"""

from __future__ import annotations

import socket
import time

import pytest
from ansible_collections.strata.deploy.plugins.modules import prometheus_gate

ERROR_RATIO = (
    'sum(app_requests_total{version="${version}",code=~"5.."}) / sum(app_requests_total{version="${version}"})'
)
P99 = 'histogram_quantile(0.99, sum by (le) (app_request_duration_seconds_bucket{version="${version}"}))'
WRONG_PASSWORD = "wrong-password"  # noqa: S105 - a wrong password for the test server
SAMPLES = 'sum(app_requests_total{version="${version}"})'

# "canary 5xx ratio < 1% and not worse than baseline + 0.5%, p99 latency < 300 ms", at least 100 requests.
QUERIES = [
    {"name": "error_ratio", "query": ERROR_RATIO, "max": 0.01, "compare_to_baseline": True, "tolerance": 0.005},
    {"name": "p99_latency_seconds", "query": P99, "max": 0.3},
]


def gate(prometheus, canary: str, **extra):
    return {
        **prometheus.connection(),
        "canary_version": canary,
        "baseline_version": "1",
        "queries": QUERIES,
        "samples_query": SAMPLES,
        "min_samples": 100,
        "retries": 0,
        **extra,
    }


def checks_by_name(result):
    return {check["name"]: check for check in result["checks"]}


def test_good_canary_passes(prometheus, run_module):
    run = run_module(prometheus_gate.main, gate(prometheus, "3"))

    assert not run.failed, run.result
    result = run.result
    assert result["changed"] is False
    assert result["passed"] is True and result["verdict"] == "pass" and result["no_data"] is False
    checks = checks_by_name(result)
    error = checks["error_ratio"]
    assert error["status"] == "pass"
    assert error["value"] == pytest.approx(0.008) and error["baseline_value"] == pytest.approx(0.005)
    assert error["baseline_limit"] == pytest.approx(0.01)
    assert error["query"] == ERROR_RATIO.replace("${version}", "3")
    assert error["baseline_query"] == ERROR_RATIO.replace("${version}", "1")
    assert checks["p99_latency_seconds"]["value"] == pytest.approx(0.2421, abs=1e-3)
    assert checks["p99_latency_seconds"]["baseline_query"] is None
    assert result["samples"]["canary"]["value"] == 1000 and result["samples"]["baseline"]["value"] == 2000


def test_bad_canary_fails_the_gate_but_not_the_task(prometheus, run_module):
    run = run_module(prometheus_gate.main, gate(prometheus, "2"))

    assert not run.failed, "the caller decides"
    result = run.result
    assert result["passed"] is False and result["verdict"] == "fail"
    checks = checks_by_name(result)
    assert checks["error_ratio"]["status"] == "fail" and checks["error_ratio"]["value"] == pytest.approx(0.03)
    assert checks["p99_latency_seconds"]["status"] == "fail"
    assert "error_ratio: 0.03 > max 0.01; 0.03 > baseline 0.005 + tolerance 0.005" in result["reason"]
    assert "p99_latency_seconds: 0.9 > max 0.3" in result["reason"]


def test_fail_on_failure_fails_the_task_with_the_result(prometheus, run_module):
    run = run_module(prometheus_gate.main, gate(prometheus, "2", fail_on_failure=True))

    assert run.failed
    assert run.result["msg"].startswith("the canary gate did not pass (fail): error_ratio")
    assert run.result["verdict"] == "fail" and len(run.result["checks"]) == 2


def test_worse_than_baseline_fails_even_under_the_absolute_limit(prometheus, run_module):
    queries = [{"name": "error_ratio", "query": ERROR_RATIO, "max": 0.01, "compare_to_baseline": True}]

    run = run_module(prometheus_gate.main, gate(prometheus, "3", queries=queries))

    assert run.result["verdict"] == "fail"
    assert run.result["reason"] == "error_ratio: 0.008 > baseline 0.005 + tolerance 0"


@pytest.mark.parametrize(
    ("policy", "verdict", "passed"),
    [("inconclusive", "inconclusive", False), ("pass", "pass", True), ("fail", "fail", False)],
)
def test_too_few_samples_follow_the_no_data_policy(prometheus, run_module, policy, verdict, passed):
    run = run_module(prometheus_gate.main, gate(prometheus, "4", no_data=policy))

    assert not run.failed, run.result
    assert run.result["verdict"] == verdict and run.result["passed"] is passed and run.result["no_data"] is True
    assert run.result["samples"]["canary"] == {"query": SAMPLES.replace("${version}", "4"), "value": 5, "min": 100}
    assert "canary has 5 sample(s) < min_samples 100" in run.result["reason"]
    assert checks_by_name(run.result)["error_ratio"]["status"] == "no_data", "no 5xx series: empty result"


def test_empty_result_without_samples_query_is_no_data(prometheus, run_module):
    run = run_module(prometheus_gate.main, gate(prometheus, "4", samples_query=None))

    assert run.result["verdict"] == "inconclusive" and run.result["no_data"] is True
    assert run.result["reason"].startswith("no data: error_ratio: no data for the canary")


def test_shortcut_queries(prometheus, run_module):
    request = {
        **prometheus.connection(),
        "canary_version": "3",
        "baseline_version": "1",
        "success_rate_query": 'sum(app_requests_total{version="${version}",code!~"5.."}) / '
        'sum(app_requests_total{version="${version}"})',
        "min_success_rate": 0.99,
        "success_rate_tolerance": 0.005,
        "latency_query": P99,
        "max_latency": 0.3,
        "compare_to_baseline": True,
        "latency_tolerance": 0.05,
    }

    run = run_module(prometheus_gate.main, request, check=True)

    assert not run.failed, run.result
    assert run.result["verdict"] == "pass", run.result["reason"]
    checks = checks_by_name(run.result)
    assert checks["success_rate"]["worse"] == "lower" and checks["success_rate"]["baseline_limit"] == pytest.approx(
        0.99
    )
    assert checks["latency"]["worse"] == "higher"


def test_query_that_does_not_parse_quotes_prometheus(prometheus, run_module):
    queries = [{"name": "broken", "query": 'sum(app_requests_total{version="${version}"', "max": 1}]

    run = run_module(prometheus_gate.main, gate(prometheus, "3", queries=queries, samples_query=None))

    assert run.failed
    assert run.result["error_type"] == "PrometheusQueryError"
    assert "bad_data" in run.result["msg"] and "parse error" in run.result["msg"]
    assert 'sum(app_requests_total{version="3"' in run.result["msg"], "the query as sent"


def test_several_series_are_refused(prometheus, run_module):
    queries = [{"name": "per_code", "query": 'app_requests_total{version="${version}"}', "max": 1e9}]

    run = run_module(prometheus_gate.main, gate(prometheus, "1", queries=queries, samples_query=None))

    assert run.failed and "returned 2 series" in run.result["msg"] and "sum()" in run.result["msg"]


def test_wrong_password_is_an_auth_error(prometheus, run_module):
    run = run_module(prometheus_gate.main, gate(prometheus, "3", password=WRONG_PASSWORD))

    assert run.failed and run.result["error_type"] == "PrometheusAuthError"
    assert "401" in run.result["msg"]
    assert WRONG_PASSWORD not in str(run.result) and prometheus.password not in str(run.result)


def test_untrusted_certificate_asks_for_ca_path(prometheus, run_module):
    run = run_module(prometheus_gate.main, gate(prometheus, "3", ca_path=None))
    assert run.failed and run.result["error_type"] == "PrometheusTLSError" and "ca_path" in run.result["msg"]

    run = run_module(prometheus_gate.main, gate(prometheus, "3", ca_path=None, validate_certs=False))
    assert not run.failed and run.result["verdict"] == "pass"


def test_unreachable_prometheus_is_retried_then_explained(run_module):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()

    run = run_module(prometheus_gate.main, {"url": url, "latency_query": "vector(1)", "max_latency": 1, "retries": 2})

    assert run.failed and run.result["error_type"] == "PrometheusUnreachableError"
    assert f"no answer from Prometheus at {url} after 3 attempt(s)" in run.result["msg"]
    assert "refused" in run.result["msg"]
    assert time.monotonic() - started < 5, "bounded backoff"


def test_placeholder_without_version_names_the_option(prometheus, run_module):
    run = run_module(prometheus_gate.main, {**prometheus.connection(), "queries": QUERIES[1:]})

    assert run.failed and run.result["param"] == "canary_version"
