#!/usr/bin/python
# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prometheus_gate
short_description: Decide from Prometheus metrics whether a canary is as healthy as its baseline
version_added: 0.1.0
description:
  - Runs PromQL instant queries for the canary version (and the baseline version where asked), all at one
    evaluation time, and returns a verdict, RV(verdict=pass), RV(verdict=fail) or RV(verdict=inconclusive), with
    every value and threshold.
  - Each check bounds the canary's value (O(queries[].max), O(queries[].min)) and/or compares it with the
    baseline's value (O(queries[].compare_to_baseline), with an allowed O(queries[].tolerance)). For example
    "canary 5xx ratio at most 1% and not worse than the baseline + 0.5%, p99 latency at most 300 ms".
  - Queries are templates. C(${version}) is replaced by O(canary_version) (or O(baseline_version) for the baseline's
    run of a query), C(${window}) by O(window), C(${name}) by the value of C(name) in O(query_vars); C($$) is a
    literal C($).
    (Jinja's C({{ }}) cannot be used for these, Ansible would render it before the module runs.)
  - A query must return one number (a scalar or a vector of one series; aggregate with C(sum) etc.). An empty
    result or NaN is "no data". With O(samples_query), a canary (or baseline) with fewer than O(min_samples) samples
    is "no data" too, whatever the other values. O(no_data) decides what no data means.
  - A ratio of error requests to all requests is empty, not 0, for a version that answered no error at all, since
    it has no error series. Write its numerator as "(sum(rate(...)) or vector(0))", as the examples do.
  - The task does not fail when the gate does not pass (unless O(fail_on_failure=true)), the caller decides.
    A query Prometheus rejects, bad credentials, or Prometheus unreachable after O(retries) retries fail the task.
  - Never changes anything.
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - strata.deploy.traffic.prometheus
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads, so it runs the queries in check mode too.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  canary_version:
    description:
      - Version of the canary, put in place of C(${version}). Required when a query uses C(${version}).
    type: str
  baseline_version:
    description:
      - Version of the baseline (the stable release), put in place of C(${version}) for the baseline's run of each
        query that compares to the baseline. Required when one does.
    type: str
  window:
    description:
      - Prometheus duration put in place of C(${window}), typically the range of C(rate(...[${window}])).
    type: str
    default: 5m
  query_vars:
    description:
      - "More placeholders, C(name -> value), for example V({job: app}) to fill C(job=\"${job}\")."
    type: dict
    default: {}
  queries:
    description:
      - The checks. Each needs O(queries[].max), O(queries[].min) and/or O(queries[].compare_to_baseline=true).
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - Name of the check in the result (unique).
        type: str
        required: true
      query:
        description:
          - PromQL template returning one number.
        type: str
        required: true
      max:
        description:
          - The canary's value must be at most this (inclusive).
        type: float
      min:
        description:
          - The canary's value must be at least this (inclusive).
        type: float
      compare_to_baseline:
        description:
          - Also run the query for O(baseline_version); the canary must not be worse than the baseline by more than
            O(queries[].tolerance). The query must use C(${version}).
        type: bool
        default: false
      tolerance:
        description:
          - How much worse than the baseline the canary may be, in the query's unit (V(0.005) for half a percent
            of a ratio).
        type: float
        default: 0
      worse:
        description:
          - Which direction is worse, for the baseline comparison. Defaults to V(lower) when only
            O(queries[].min) is set, else V(higher).
        type: str
        choices: [higher, lower]
  success_rate_query:
    description:
      - Shortcut for a check named C(success_rate) (higher is better), a PromQL template returning the canary's
        success ratio (0 to 1).
    type: str
  min_success_rate:
    description:
      - Lowest success ratio allowed for O(success_rate_query), for example V(0.99).
    type: float
  success_rate_tolerance:
    description:
      - How much lower than the baseline's the canary's success ratio may be, with O(compare_to_baseline=true).
    type: float
    default: 0
  latency_query:
    description:
      - Shortcut for a check named C(latency) (lower is better), a PromQL template returning the canary's latency,
        for example a C(histogram_quantile(0.99, ...)) in seconds.
    type: str
  max_latency:
    description:
      - Highest latency allowed for O(latency_query), in the query's unit.
    type: float
  latency_tolerance:
    description:
      - How much higher than the baseline's the canary's latency may be, with O(compare_to_baseline=true).
    type: float
    default: 0
  compare_to_baseline:
    description:
      - Compare O(success_rate_query) and O(latency_query) with the baseline too (O(queries) have their own setting).
    type: bool
    default: false
  samples_query:
    description:
      - PromQL template counting the canary's samples in the window, for example
        C(sum(increase(app_requests_total{version="${version}"}[${window}]))). Also run for the baseline when a
        check compares to it.
    type: str
  min_samples:
    description:
      - Fewest samples O(samples_query) must count for the verdict to rest on the values; below it, O(no_data)
        decides.
    type: int
    default: 1
  no_data:
    description:
      - The verdict when there is not enough data (too few samples, an empty result or NaN, and no check failed
        on data it had).
    type: str
    choices: [pass, fail, inconclusive]
    default: inconclusive
  fail_on_failure:
    description:
      - Fail the task when the verdict is not V(pass) (V(fail) or V(inconclusive)). The result is returned either way.
    type: bool
    default: false
notes:
  - Thresholds are inclusive. A value of C(+Inf) (a C(histogram_quantile) above the highest bucket) is compared like
    any number and returned as the string V(+Inf).
seealso:
  - name: Prometheus HTTP API
    description: The instant query endpoint the module calls.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
"""

EXAMPLES = r"""
- name: Gate the canary - 5xx ratio <= 1% and <= baseline + 0.5%, p99 latency <= 300 ms
  strata.deploy.prometheus_gate:
    url: https://prometheus.example.internal:9090
    username: canary-gate
    password: "{{ vault_prometheus_gate_password }}"
    ca_path: /usr/local/share/ca-certificates/strata-ca.crt
    canary_version: "{{ app_canary_version }}"
    baseline_version: "{{ app_stable_version }}"
    window: 5m
    samples_query: sum(increase(app_requests_total{version="${version}"}[${window}]))
    min_samples: 200
    no_data: inconclusive
    queries:
      - name: error_ratio
        query: >-
          (sum(rate(app_requests_total{version="${version}",code=~"5.."}[${window}])) or vector(0))
          / sum(rate(app_requests_total{version="${version}"}[${window}]))
        max: 0.01
        compare_to_baseline: true
        tolerance: 0.005
      - name: p99_latency_seconds
        query: >-
          histogram_quantile(0.99,
          sum by (le) (rate(app_request_duration_seconds_bucket{version="${version}"}[${window}])))
        max: 0.3
  register: __gate

- name: Stop the rollout when the gate failed
  ansible.builtin.assert:
    that: __gate.verdict != 'fail'
    fail_msg: "canary gate failed: {{ __gate.reason }}"

- name: Same with the shortcuts, failing the task unless the gate passes
  strata.deploy.prometheus_gate:
    url: http://127.0.0.1:9090
    canary_version: 2.1.0
    baseline_version: 2.0.0
    success_rate_query: >-
      sum(rate(app_requests_total{version="${version}",code!~"5.."}[${window}]))
      / sum(rate(app_requests_total{version="${version}"}[${window}]))
    min_success_rate: 0.99
    success_rate_tolerance: 0.005
    compare_to_baseline: true
    fail_on_failure: true
"""

RETURN = r"""
passed:
  description: Whether the verdict is V(pass).
  returned: always
  type: bool
  sample: false
verdict:
  description: V(pass), V(fail) or V(inconclusive) (only from O(no_data=inconclusive)).
  returned: always
  type: str
  sample: fail
reason:
  description: Why, in one line (the failed checks with their values and thresholds, or what data was missing).
  returned: always
  type: str
  sample: "error_ratio: 0.03 > max 0.01; 0.03 > baseline 0.005 + tolerance 0.005"
no_data:
  description: Whether the verdict comes from the O(no_data) policy.
  returned: always
  type: bool
  sample: false
checks:
  description: One entry per check, with the rendered queries, the values and the thresholds.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's name.
      type: str
      sample: error_ratio
    status:
      description: V(pass), V(fail) or V(no_data).
      type: str
      sample: fail
    detail:
      description: The comparisons made, in words.
      type: str
      sample: "0.03 > max 0.01"
    query:
      description: The canary's query, as sent.
      type: str
      sample: 'sum(app_requests_total{version="2",code=~"5.."}) / sum(app_requests_total{version="2"})'
    value:
      description: The canary's value (V(null) for no data; V(+Inf)/V(-Inf) as strings).
      type: raw
      sample: 0.03
    max:
      description: The check's O(queries[].max).
      type: float
      sample: 0.01
    min:
      description: The check's O(queries[].min).
      type: float
      sample: null
    compare_to_baseline:
      description: Whether the baseline was queried too.
      type: bool
      sample: true
    tolerance:
      description: The allowed difference to the baseline.
      type: float
      sample: 0.005
    worse:
      description: Which direction is worse.
      type: str
      sample: higher
    baseline_query:
      description: The baseline's query, as sent (V(null) without a baseline comparison).
      type: str
      sample: 'sum(app_requests_total{version="1",code=~"5.."}) / sum(app_requests_total{version="1"})'
    baseline_value:
      description: The baseline's value.
      type: raw
      sample: 0.005
    baseline_limit:
      description: The limit the baseline sets (its value plus or minus the tolerance).
      type: raw
      sample: 0.01
samples:
  description: With O(samples_query), C(canary) (and C(baseline)) with the rendered query, the count and the minimum.
  returned: always
  type: dict
  sample: {canary: {query: 'sum(app_requests_total{version="2"})', value: 1000, min: 200}}
evaluated_at:
  description: The evaluation time of every query (Unix seconds).
  returned: always
  type: float
  sample: 1735725600.0
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.strata.deploy.plugins.module_utils._prometheus.client import (
    PrometheusClient,
    build_gate,
    evaluate_gate,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic import module as glue

GATE_OPTIONS = (
    "queries",
    "success_rate_query",
    "min_success_rate",
    "success_rate_tolerance",
    "latency_query",
    "max_latency",
    "latency_tolerance",
    "compare_to_baseline",
    "canary_version",
    "baseline_version",
    "window",
    "query_vars",
    "samples_query",
    "min_samples",
    "no_data",
)


def argument_spec() -> dict:
    spec = glue.prometheus_connection_spec()
    spec.update(
        canary_version={"type": "str"},
        baseline_version={"type": "str"},
        window={"type": "str", "default": "5m"},
        query_vars={"type": "dict", "default": {}},
        queries={
            "type": "list",
            "elements": "dict",
            "options": {
                "name": {"type": "str", "required": True},
                "query": {"type": "str", "required": True},
                "max": {"type": "float"},
                "min": {"type": "float"},
                "compare_to_baseline": {"type": "bool", "default": False},
                "tolerance": {"type": "float", "default": 0.0},
                "worse": {"type": "str", "choices": ["higher", "lower"]},
            },
        },
        success_rate_query={"type": "str"},
        min_success_rate={"type": "float"},
        success_rate_tolerance={"type": "float", "default": 0.0},
        latency_query={"type": "str"},
        max_latency={"type": "float"},
        latency_tolerance={"type": "float", "default": 0.0},
        compare_to_baseline={"type": "bool", "default": False},
        samples_query={"type": "str"},
        min_samples={"type": "int", "default": 1},
        no_data={"type": "str", "choices": ["pass", "fail", "inconclusive"], "default": "inconclusive"},
        fail_on_failure={"type": "bool", "default": False},
    )
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_together=[("username", "password")],
        required_one_of=[("queries", "success_rate_query", "latency_query")],
    )
    p = module.params
    if p["username"] and p["url"].lower().startswith("http://"):
        module.warn(f"basic auth credentials are sent in clear text to {p['url']}: use https")
    with glue.failing(module, "checking the gate's options"):
        gate = build_gate(**{name: p[name] for name in GATE_OPTIONS})
        client = PrometheusClient(
            p["url"],
            username=p["username"],
            password=p["password"],
            ca_path=p["ca_path"],
            validate_certs=p["validate_certs"],
            timeout=p["timeout"],
            retries=p["retries"],
        )
    with glue.failing(module, f"querying Prometheus at {client.url}", "nothing was changed (the gate only reads)"):
        report = evaluate_gate(client, gate)
    for warning in report.warnings:
        module.warn(f"Prometheus: {warning}")
    result = report.as_dict()
    if p["fail_on_failure"] and not report.passed:
        module.fail_json(msg=f"the canary gate did not pass ({report.verdict}): {report.reason}", **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
