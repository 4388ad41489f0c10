"""The gate's pure logic: validation, templates, judging, verdicts (no Prometheus needed)."""

from __future__ import annotations

import math

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._prometheus.client import (
    Check,
    PrometheusResponseError,
    QueryResult,
    Series,
    build_gate,
    evaluate_gate,
    json_number,
    judge,
    parse_query_answer,
    placeholders,
    render,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError

RATIO = 'sum(errors{v="${version}"}[${window}]) / sum(all{v="${version}"}[${window}])'


class StubClient:
    """Answers each rendered query from ``answers`` (a missing query is an empty vector); records the calls."""

    url = "https://prom.test"

    def __init__(self, answers: dict[str, float]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, float | None]] = []

    def query(self, promql: str, at: float | None = None) -> QueryResult:
        self.calls.append((promql, at))
        if promql in self.answers:
            return QueryResult(promql, "vector", (Series({}, self.answers[promql]),), ("partial data",))
        return QueryResult(promql, "vector", ())


def test_placeholders_and_render():
    assert placeholders("a${version}b $window $$ c") == {"version", "window"}
    gate = build_gate(queries=[{"name": "r", "query": RATIO, "max": 0.01}], canary_version="2.1", window="1m")
    assert render(RATIO, gate, "2.1") == 'sum(errors{v="2.1"}[1m]) / sum(all{v="2.1"}[1m])'
    with pytest.raises(ValueError, match="invalid placeholder"):
        placeholders("cost in $")


@pytest.mark.parametrize(
    ("kwargs", "param", "text"),
    [
        ({}, "queries", "at least one of"),
        ({"queries": [{"name": "x", "query": "up"}]}, "queries[0]", "nothing to check"),
        ({"queries": [{"name": "x", "query": "up", "max": 1, "min": 2}]}, "queries[0]", "below min"),
        ({"queries": [{"name": "x", "query": "up", "max": 1, "bogus": 1}]}, "queries[0]", "unknown key(s) bogus"),
        ({"queries": [{"name": "x", "query": "up", "max": "lots"}]}, "queries[0].max", "expected a number"),
        ({"queries": [{"name": "x", "query": "up", "max": 1}] * 2}, "queries", "used twice: x"),
        ({"queries": [{"name": "x", "query": RATIO, "max": 1}]}, "canary_version", "uses ${version}"),
        ({"queries": [{"name": "x", "query": "up{a='$job'}", "max": 1}]}, "x", "unknown placeholder(s) ${job}"),
        (
            {"queries": [{"name": "x", "query": "up", "compare_to_baseline": True}], "baseline_version": "1"},
            "x",
            "needs ${version}",
        ),
        (
            {"queries": [{"name": "x", "query": RATIO, "compare_to_baseline": True}], "canary_version": "2"},
            "baseline_version",
            "compares the canary",
        ),
        (
            {
                "queries": [{"name": "x", "query": RATIO, "compare_to_baseline": True}],
                "canary_version": "2",
                "baseline_version": "2",
            },
            "baseline_version",
            "another version",
        ),
        ({"queries": [{"name": "x", "query": RATIO, "max": 1}], "canary_version": 'a"b'}, "canary_version", "quotes"),
        ({"queries": [{"name": "x", "query": "up", "max": 1}], "window": "5 minutes"}, "window", "duration"),
        ({"queries": [{"name": "x", "query": "up", "max": 1}], "no_data": "maybe"}, "no_data", "one of"),
        ({"queries": [{"name": "x", "query": "up", "max": 1}], "min_samples": -1}, "min_samples", "0 or more"),
        (
            {"queries": [{"name": "x", "query": "up", "max": 1}], "query_vars": {"version": "1"}},
            "query_vars.version",
            "",
        ),
        ({"success_rate_query": "up"}, "min_success_rate", "set it"),
        ({"latency_query": "up"}, "max_latency", "set it"),
    ],
)
def test_bad_gates_name_the_parameter(kwargs, param, text):
    with pytest.raises(TrafficSpecError) as raised:
        build_gate(**kwargs)
    assert raised.value.param == param
    assert text in raised.value.message


def test_shortcuts_become_checks():
    gate = build_gate(
        success_rate_query=RATIO,
        min_success_rate=0.99,
        success_rate_tolerance=0.005,
        latency_query="lat{v='${version}'}",
        max_latency=0.3,
        compare_to_baseline=True,
        canary_version="2",
        baseline_version="1",
    )
    assert gate.checks == (
        Check("success_rate", RATIO, None, 0.99, True, 0.005, "lower"),
        Check("latency", "lat{v='${version}'}", 0.3, None, True, 0.0, "higher"),
    )


@pytest.mark.parametrize(
    ("check", "value", "baseline", "status", "detail"),
    [
        (Check("c", "q", max=0.01), 0.01, None, "pass", "0.01 <= max 0.01"),
        (Check("c", "q", max=0.01), 0.0101, None, "fail", "0.0101 > max 0.01"),
        (Check("c", "q", min=0.99), 0.98, None, "fail", "0.98 < min 0.99"),
        (Check("c", "q", max=0.3), math.inf, None, "fail", "inf > max 0.3"),
        (Check("c", "q", max=1), None, None, "no_data", "no data for the canary (empty result or NaN)"),
        (
            Check("c", "q", max=0.01, compare_to_baseline=True, tolerance=0.005),
            0.008,
            0.005,
            "pass",
            "0.008 <= max 0.01; 0.008 <= baseline 0.005 + tolerance 0.005",
        ),
        (
            Check("c", "q", compare_to_baseline=True, tolerance=0.01, worse="lower"),
            0.97,
            0.99,
            "fail",
            "0.97 < baseline 0.99 - tolerance 0.01",
        ),
        (Check("c", "q", compare_to_baseline=True), 0.5, None, "no_data", "no data for the baseline"),
        (Check("c", "q", max=0.1, compare_to_baseline=True), 0.5, None, "fail", "0.5 > max 0.1 (no data for the"),
    ],
)
def test_judge(check, value, baseline, status, detail):
    got_status, got_detail, _limit = judge(check, value, baseline)
    assert got_status == status
    assert got_detail.startswith(detail)


def test_evaluate_runs_every_query_at_one_time_and_decides():
    gate = build_gate(
        queries=[{"name": "ratio", "query": RATIO, "max": 0.01, "compare_to_baseline": True, "tolerance": 0.005}],
        canary_version="2",
        baseline_version="1",
        samples_query='sum(all{v="${version}"})',
        min_samples=100,
    )
    client = StubClient(
        {
            render(RATIO, gate, "2"): 0.012,
            render(RATIO, gate, "1"): 0.01,
            'sum(all{v="2"})': 500,
            'sum(all{v="1"})': 5000,
        }
    )

    report = evaluate_gate(client, gate, at=1234.5)

    assert report.verdict == "fail" and not report.passed and not report.no_data
    assert report.reason == "ratio: 0.012 > max 0.01", "a failed check lists what failed"
    assert report.checks[0].detail == "0.012 > max 0.01" and report.checks[0].limit == pytest.approx(0.015)
    assert {at for _query, at in client.calls} == {1234.5}
    assert len(client.calls) == 4
    assert report.warnings == ("partial data",) * 4
    assert report.as_dict()["samples"]["baseline"] == {"query": 'sum(all{v="1"})', "value": 5000, "min": 100}


@pytest.mark.parametrize(("policy", "verdict"), [("pass", "pass"), ("fail", "fail"), ("inconclusive", "inconclusive")])
def test_no_data_follows_the_policy_even_over_a_failing_value(policy, verdict):
    gate = build_gate(
        queries=[{"name": "ratio", "query": RATIO, "max": 0.01}],
        canary_version="2",
        samples_query='sum(all{v="${version}"})',
        min_samples=100,
        no_data=policy,
    )
    client = StubClient({render(RATIO, gate, "2"): 0.5, 'sum(all{v="2"})': 3})

    report = evaluate_gate(client, gate)

    assert report.verdict == verdict and report.no_data
    assert report.reason == f"not enough data: canary has 3 sample(s) < min_samples 100 (no_data={policy})"


def test_parse_answers():
    scalar = parse_query_answer(
        "vector(1)", {"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}}
    )
    assert scalar.single_value() == 2.0
    nan = parse_query_answer("q", {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"a": "b"}, "value": [1, "NaN"]}]}})  # fmt: skip
    assert nan.single_value() is None
    two = QueryResult("q", "vector", (Series({"code": "200"}, 1.0), Series({"code": "500"}, 2.0)))
    with pytest.raises(PrometheusResponseError, match=r'returned 2 series \({code="200"}, {code="500"}\)'):
        two.single_value()
    matrix = parse_query_answer("q[5m]", {"status": "success", "data": {"resultType": "matrix", "result": []}})
    with pytest.raises(PrometheusResponseError, match="returned a matrix"):
        matrix.single_value()
    with pytest.raises(PrometheusResponseError, match="not a Prometheus query answer"):
        parse_query_answer("q", {"hello": "world"})
    assert json_number(math.inf) == "+Inf" and json_number(-math.inf) == "-Inf" and json_number(0.5) == 0.5
