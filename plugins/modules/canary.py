# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The canary action runs on the controller (plugins/action/canary.py); this file only documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: canary
short_description: Drive a whole canary rollout over one or more load balancers, gated on metrics, resumable
version_added: 0.1.0
description:
  - Moves the traffic of one backend from its O(stable) servers to its O(canary) servers in O(steps) (for example
    10, 25, 50 and 100 percent), on every load balancer of O(load_balancers) in lockstep. After each step it waits
    O(pause), then evaluates O(gate) (the options of M(strata.deploy.prometheus_gate)); a gate that does not pass
    triggers O(on_failure).
  - It prints a progress line per step as it goes (the weight, the split read back from every load balancer, the
    gate's values) and returns every event of the rollout (who, when, the state before and after, the gate
    results) for audit.
  - A journal, a JSON file on every load balancer (O(journal_path)), records each step once its gate passed. A run
    that finds an unfinished journal (the controller was killed, the rollout was paused) resumes it or rolls it
    back, as O(resume_policy) says; a rollback that was interrupted is always finished.
  - Nothing changes before every input is checked, the backend and servers on every load balancer included, and
    before the gate was evaluated once (a query that does not parse, or a Prometheus that does not answer, stops
    the run before any change). A step that a load balancer refuses returns every load balancer to the last safe
    state and pauses the rollout; it is never left half applied.
  - Reaching each load balancer. The action runs on the controller, in the task of ONE host (use C(run_once),
    or a play of one host). For every host of O(load_balancers) it opens a connection the way a C(delegate_to)
    task does (that host's connection, user, become and interpreter variables) and runs the provider module there
    (M(strata.deploy.haproxy_servers) or M(strata.deploy.nginx_upstream) to set the weights,
    M(strata.deploy.traffic_info) to read them) and the journal reads and writes. The gate runs on the task's own
    host, which must reach Prometheus.
  - The load balancers are changed one after the other in the order of O(load_balancers); between the first and
    the last, for the time of one module run on each, they hold different weights.
author:
  - strata.deploy maintainers (@strata-deploy)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - ansible.builtin.action_common_attributes.conn
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  become:
    support: full
    details: The task's become settings (and each load balancer's C(ansible_become*) variables) apply on every load
      balancer, as for a C(delegate_to) task.
  connection:
    support: full
  delegation:
    support: full
    details: The task may be delegated (the gate then runs on the delegated host); the load balancers are reached
      whatever the task's host.
  check_mode:
    support: full
    details: Reads the load balancers and the journal, evaluates the gate once (read only), and prints and returns
      the steps a run would apply with the weights of every server. Changes nothing and writes no journal.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  provider:
    description:
      - The kind of load balancer. V(haproxy) drives the runtime API through M(strata.deploy.haproxy_servers);
        V(nginx) rewrites the upstream file and reloads through M(strata.deploy.nginx_upstream); V(alb) sets the
        target group weights of one ALB listener rule through M(strata.deploy.alb_traffic) (O(backend) is the rule
        ARN, O(stable) and O(canary) target group names, the journal is kept in the rule's tags);
        V(kubernetes) sets the backendRef weights of an HTTPRoute through M(strata.deploy.k8s_traffic) (O(backend)
        is the route, O(stable) and O(canary) Service names, the journal is an annotation on the route).
      - With V(alb) and V(kubernetes), O(load_balancers) names the host that calls the API (usually C(localhost))
        and O(journal_path) is not used.
    type: str
    required: true
    choices: [haproxy, nginx, alb, kubernetes]
  load_balancers:
    description:
      - Inventory names of the load balancers to change, in the order they are changed.
    type: list
    elements: str
    required: true
  provider_options:
    description:
      - Options passed to the provider modules on every load balancer. V(haproxy) takes C(socket), C(timeout) and
        C(state_file) (see M(strata.deploy.haproxy_servers)); V(nginx) takes C(path), C(test_command),
        C(reload_command) and C(timeout) (see M(strata.deploy.nginx_upstream)); V(alb) takes the AWS options
        C(region), C(endpoint_url), C(access_key), C(secret_key), C(session_token), C(profile), C(validate_certs),
        C(aws_timeout), C(aws_retries) and C(stickiness) (see M(strata.deploy.alb_traffic)); V(kubernetes) takes
        C(namespace), C(kubeconfig), C(context), C(rule), C(timeout) and C(conflict_retries)
        (see M(strata.deploy.k8s_traffic)).
      - An unknown name fails the task before anything is changed.
    type: dict
    default: {}
  provider_options_per_lb:
    description:
      - C(load balancer -> options), merged over O(provider_options) for that load balancer (a socket or upstream
        file at another path, for example).
    type: dict
    default: {}
  backend:
    description:
      - The HAProxy backend, or the nginx upstream, whose traffic is shifted.
    type: str
    required: true
  stable:
    description:
      - The servers that run the current version (HAProxy server names, nginx C(address:port)).
      - Every other server of the backend must take no traffic (weight 0, V(maint) or V(drain)) when a rollout
        starts, so that the split is what the steps say.
    type: list
    elements: str
    required: true
  canary:
    description:
      - The servers that run the new version.
    type: list
    elements: str
    required: true
  steps:
    description:
      - The canary's share of the traffic at each step, in percent. Each item is a number or a dict
        C({weight, pause, gate}) that overrides O(pause) and whether the gate runs for that step.
      - Weights must not decrease and the last must be 100, unless O(allow_non_monotonic=true).
      - Within each set (stable, canary), the weight is spread evenly over the servers.
    type: list
    elements: raw
    default: [10, 25, 50, 100]
  pause:
    description:
      - Time to wait after each step before its gate is evaluated (bake time), as seconds or a duration such as
        V(30s), V(2m), V(1m30s).
    type: raw
    default: 0
  allow_non_monotonic:
    description:
      - Accept steps that decrease or do not end at 100.
    type: bool
    default: false
  gate:
    description:
      - The options of M(strata.deploy.prometheus_gate) (C(url), C(queries) or the shortcuts, C(canary_version),
        C(baseline_version), C(no_data), credentials, ...), evaluated after every step unless the step's own C(gate)
        is V(false). C(fail_on_failure) is ignored.
      - The step passes only on the verdict V(pass). V(fail), V(inconclusive) (after O(gate_retries)) and a gate
        that cannot be evaluated (Prometheus unreachable after its retries, a rejected query) trigger O(on_failure).
      - Without it, the steps only wait O(pause).
    type: dict
  gate_retries:
    description:
      - How many more times an inconclusive gate is evaluated, O(gate_retry_delay) apart, before it counts as not
        passed. A V(fail) verdict is final at once.
    type: int
    default: 0
  gate_retry_delay:
    description:
      - Time between two evaluations of an inconclusive gate (seconds or a duration).
    type: raw
    default: 10s
  on_failure:
    description:
      - What a gate that does not pass does.
      - V(rollback) - the canary goes back to 0% through O(abort_steps); the journal ends V(rolled_back).
      - V(freeze) - the traffic goes back to the last step whose gate passed and the rollout is paused; the next run
        retries the failed step or rolls back, as O(resume_policy) says.
      - V(pause) - the traffic stays at the failed step and the rollout is paused; the next run evaluates that step's
        gate again before going on, or rolls back, as O(resume_policy) says.
      - In every case the task fails, with the gate's values in RV(msg).
    type: str
    choices: [rollback, freeze, pause]
    default: rollback
  abort_steps:
    description:
      - How a rollback returns to 0%. V(immediate) (one step), or a strictly decreasing list of percentages ending
        at 0, such as V([25, 10, 0]); the steps at or above the current share are skipped. Gates do not apply.
    type: raw
    default: immediate
  abort_pause:
    description:
      - Time to wait between two abort steps.
    type: raw
    default: 0
  resume_policy:
    description:
      - What a run does with an unfinished journal of the same O(rollout_id) (running or paused).
      - V(resume) - go on from the first step not recorded; the step in progress is applied again (no change when it
        is already there) and its gate evaluated again.
      - V(rollback) - roll back to 0%.
      - A journal in phase V(aborting) (a rollback was interrupted) is always rolled back to the end.
    type: str
    choices: [resume, rollback]
    default: resume
  rollout_id:
    description:
      - The name of this rollout, for example C(app-1.1.0). A run that finds the journal of another unfinished
        rollout on the backend fails without changing anything; the journal of a finished one is replaced.
      - A rollout that is done is not run again (the task reports no change); a rollout that was rolled back is not
        tried again under the same name (the task fails without changing anything) unless O(retry_rolled_back=true).
      - Required with O(mode=rollout). With O(mode=rollback), defaults to the rollout found in the journal.
    type: str
  mode:
    description:
      - V(rollout) - run (or resume) the rollout.
      - V(rollback) - send 0% to the canary through O(abort_steps), whatever rollout is in the journal (running,
        paused or done). The task succeeds once the canary takes no traffic. A rollout already rolled back is left
        as it is (servers put back in the traffic since then stay).
    type: str
    choices: [rollout, rollback]
    default: rollout
  retry_rolled_back:
    description:
      - Start again, from its first step, a rollout of the same O(rollout_id) that was rolled back (its journal is
        replaced). For a deliberate second attempt, such as switching a blue-green pair again after switching back.
    type: bool
    default: false
  journal_path:
    description:
      - The journal file on every load balancer. Its folder is created (mode C(0750)) if needed; the file is written
        atomically, mode C(0640).
      - Defaults to C(/var/lib/strata/rollouts/<backend>.json).
    type: str
notes:
  - A journal records a step once its gate passed, so after the controller is killed it lags the load balancers by at
    most one step; a resumed run applies that step again and evaluates its gate, a rollback starts from what the load
    balancers show.
  - The weights come from the provider's scale (HAProxy 0-256 per server, nginx 1-100 with 0 as C(down)), so the
    split read back is within a fraction of a percent of the step.
seealso:
  - module: strata.deploy.haproxy_servers
  - module: strata.deploy.nginx_upstream
  - module: strata.deploy.traffic_info
  - module: strata.deploy.prometheus_gate
"""

EXAMPLES = r"""
- name: Shift backend app to the canary app3 in 4 steps, gated on the 5xx ratio, on both load balancers
  strata.deploy.canary:
    provider: haproxy
    load_balancers: "{{ groups['lb'] }}"
    backend: app
    stable: [app1, app2]
    canary: [app3]
    rollout_id: "app-{{ app_version }}"
    steps: [10, 25, 50, 100]
    pause: 2m
    gate:
      url: https://mon1:9090
      username: canary-gate
      password: "{{ vault_prometheus_gate_password }}"
      canary_version: "{{ app_version }}"
      baseline_version: "{{ app_previous_version }}"
      window: 2m
      no_data: inconclusive
      queries:
        - name: error_ratio
          query: >-
            (sum(rate(strata_demo_http_requests_total{version="${version}",code=~"5.."}[${window}])) or vector(0))
            / sum(rate(strata_demo_http_requests_total{version="${version}"}[${window}]))
          max: 0.01
    gate_retries: 3
    gate_retry_delay: 30s
    on_failure: rollback
    abort_steps: [10, 0]
  run_once: true
  register: __canary

- name: Roll back whatever canary is in flight on backend app (the canary gets 0%)
  strata.deploy.canary:
    provider: haproxy
    load_balancers: "{{ groups['lb'] }}"
    backend: app
    stable: [app1, app2]
    canary: [app3]
    mode: rollback
  run_once: true

- name: Same on nginx, where servers are addresses and the upstream file is rewritten and reloaded once per step
  strata.deploy.canary:
    provider: nginx
    load_balancers: "{{ groups['lb'] }}"
    provider_options:
      reload_command: systemctl reload nginx
    backend: app
    stable: ["10.89.60.21:8080", "10.89.60.22:8080"]
    canary: ["10.89.60.23:8080"]
    rollout_id: app-1.1.0
    steps: [25, 100]
    pause: 30s
  run_once: true
"""

RETURN = r"""
status:
  description:
    - V(done) (the canary takes 100%), V(rolled_back) (0%), V(frozen) or V(paused) (a gate did not pass, see
      O(on_failure)), V(interrupted) (a load balancer or the journal could not be written; see RV(msg)), V(refused)
      (nothing was changed, see RV(msg)) or V(planned) (check mode).
  returned: always
  type: str
  sample: done
decision:
  description: What the run did with the journal it found - V(start), V(resume), V(rollback), V(nothing) or V(refuse).
  returned: always
  type: str
  sample: start
msg:
  description: What happened, in one or two sentences; on failure, what was tried and what state was left.
  returned: always
  type: str
  sample: "rollout app-1.1.0 done: the canary takes 100%"
summary:
  description: A one-line summary for a human.
  returned: always
  type: str
  sample: "app-1.1.0 on haproxy backend app (lb1, lb2): done - canary lb1 100.0%, lb2 100.0%; 4 gate(s), 4 passed; 41s"
observed:
  description: The canary's share of the traffic (percent) read back from each load balancer at the end (V(null)
    when no server of the backend takes traffic).
  returned: always
  type: dict
  sample: {lb1: 100.0, lb2: 100.0}
plan:
  description: The steps this run applied (or would apply, in check mode), with the weight and state of every server.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: step
      index: 0
      weight: 10.0
      pause: 120.0
      gate: true
      servers: {app1: {weight: 256, state: ready}, app2: {weight: 256, state: ready}, app3: {weight: 56, state: ready}}
gates:
  description: Every gate evaluated in this run, with its verdict and the values of its checks.
  returned: always
  type: list
  elements: dict
  sample:
    - {step_index: 0, weight: 10.0, verdict: pass, reason: "",
       checks: [{name: error_ratio, passed: true, detail: "0.004 <= max 0.01"}]}
events:
  description:
    - Every event of the rollout's journal, this run's and the earlier ones (C(at), C(who), C(action), C(step_index),
      C(before), C(after), C(gates), C(message)), for audit.
  returned: always
  type: list
  elements: dict
  sample:
    - {at: "2025-03-01T12:00:00.000000Z", who: "deploy@ci1", action: step, step_index: 0,
       before: {app: {app3: {weight: 0, state: ready}}}, after: {app: {app3: {weight: 56, state: ready}}},
       gates: [{name: error_ratio, passed: true, detail: "0.004 <= max 0.01"}], message: "canary 10%"}
journal:
  description: The journal's path on the load balancers, its phase and last recorded step at the end of the run.
  returned: always
  type: dict
  sample: {path: /var/lib/strata/rollouts/app.json, rollout_id: app-1.1.0, phase: done, step_index: 3}
rollout_id:
  description: The rollout's name.
  returned: always
  type: str
  sample: app-1.1.0
elapsed:
  description: Seconds the run took.
  returned: always
  type: float
  sample: 41.2
"""
