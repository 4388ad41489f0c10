# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canary rollout state machine: steps, pauses, gates, ``on_failure``, gradual abort and resume, all kept in
the journal.

Pure: every effect goes through a ``Port`` the caller provides (the ``strata.deploy.canary`` action runs the
provider module on each load balancer; the unit tests use a fake). ``Rollout(spec, port, who).run(found)``
reads the load balancers, decides from the journal ``found`` on them what to do (start, resume, roll back, or
nothing), and drives the steps.

Rules the machine keeps:

- Nothing changes before every input is checked: steps and abort steps, the servers on EVERY load balancer, and
  the gate (it is evaluated once before the first change, so a query that does not parse or a Prometheus that
  does not answer stops the run with the traffic where it was).
- A step is recorded in the journal (``advance``) only once its gate passed; its traffic is applied before,
  so after a kill the journal lags the load balancer by at most one step. A resumed run re-applies and re-gates
  that step (compare-and-set: no change when it is already there); a rollback starts from what the load
  balancers show, not from the journal.
- A failed gate: ``rollback`` records the step with its failed gates and the abort in ONE journal write, then
  walks ``abort_steps`` down to 0; ``freeze`` returns to the last state whose gates passed and pauses;
  ``pause`` keeps the traffic where it is and pauses. A paused rollout resumes at the step that failed (its gate
  is evaluated again) or is rolled back, as ``resume_policy`` says.
- A step that cannot be applied on one load balancer returns every load balancer to the last safe state, pauses
  the journal and stops: never half-applied silently. A rollback that cannot finish leaves the journal in phase
  ``aborting``, and the next run finishes it whatever ``resume_policy`` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic import journal as jr
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficError,
    TrafficSpecError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.plan import (
    IMMEDIATE,
    Step,
    abort_plan,
    build_plan,
    parse_duration,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import READY, ServerState, parse_state
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import (
    ALB,
    HAPROXY,
    KUBERNETES,
    NGINX,
    WeightScale,
    server_weights,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import State

ROLLBACK = "rollback"
FREEZE = "freeze"
PAUSE = "pause"
ON_FAILURE = (ROLLBACK, FREEZE, PAUSE)

MODE_ROLLOUT = "rollout"
MODE_ROLLBACK = "rollback"
MODES = (MODE_ROLLOUT, MODE_ROLLBACK)

# Outcome.status
DONE = "done"  # the canary takes 100% (the rollout completed, now or earlier)
ROLLED_BACK = "rolled_back"  # the canary takes 0%
FROZEN = "frozen"  # a gate failed; the traffic is back at the last state whose gates passed
PAUSED = "paused"  # a gate failed; the traffic stays at the step that failed
INTERRUPTED = "interrupted"  # a load balancer or the journal could not be written; see the message
REFUSED = "refused"  # nothing was changed (another rollout in flight, this one rolled back earlier, ...)
PLANNED = "planned"  # check mode: what a run would do

# Gate verdicts (those of strata.deploy.prometheus_gate, plus ``error`` when the gate could not be evaluated)
PASSED = "pass"
FAILED = "fail"
INCONCLUSIVE = "inconclusive"
ERROR = "error"


class RolloutError(TrafficError):
    """The rollout could not go on; ``message`` says what was tried and what state was left."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class ApplyError(RolloutError):
    """A load balancer refused or did not confirm a change. ``lb`` is the one that failed."""

    def __init__(self, lb: str, message: str) -> None:
        self.lb = lb
        super().__init__(f"{lb}: {message}")


class GateError(RolloutError):
    """The gate could not be evaluated (a query Prometheus rejects, Prometheus unreachable, bad credentials)."""


class SaveError(RolloutError):
    """The journal could not be written on a load balancer."""


# -- providers -------------------------------------------------------------------------------------


def _haproxy_set_args(backend: str, servers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"servers": {backend: servers}}


def _nginx_set_args(backend: str, servers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"upstream": backend, "servers": servers}


def _alb_set_args(backend: str, servers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    # a target group has no admin state: the rollout's targets are always ``ready``, only weights are sent
    return {"rule_arn": backend, "target_groups": {name: value["weight"] for name, value in servers.items()}}


def _alb_info_args(backend: str) -> dict[str, Any]:
    return {"provider": "alb", "backends": [backend]}


def _alb_journal_args(backend: str, text: str) -> dict[str, Any]:
    return {"rule_arn": backend, "journal": text}


# The AWS options of alb_traffic and traffic_info (module_utils/_alb/module.py: aws_connection_spec).
AWS_OPTIONS = (
    "region",
    "endpoint_url",
    "access_key",
    "secret_key",
    "session_token",
    "profile",
    "validate_certs",
    "aws_timeout",
    "aws_retries",
)


def _k8s_set_args(backend: str, servers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    # backend is the HTTPRoute's name, servers its backendRefs' Services; only weights are sent
    return {"name": backend, "backends": {name: value["weight"] for name, value in servers.items()}}


def _k8s_info_args(backend: str) -> dict[str, Any]:
    return {"provider": "kubernetes", "backends": [backend]}


def _k8s_journal_args(backend: str, text: str) -> dict[str, Any]:
    return {"name": backend, "journal": text}


def _haproxy_info_args(backend: str) -> dict[str, Any]:
    return {"provider": "haproxy", "backends": [backend]}


def _nginx_info_args(backend: str) -> dict[str, Any]:
    return {"provider": "nginx", "upstream": backend, "backends": [backend]}


@dataclass(frozen=True)
class Provider:
    """How the rollout drives one kind of load balancer: which module sets the weights (run on each load
    balancer), which module reads them, and which of ``provider_options`` each module takes.

    A new provider (ALB, Kubernetes) is one client under ``module_utils/_<provider>``, one thin module, and one
    entry in ``PROVIDERS``; the state machine does not change.

    The journal is a file on each load balancer unless ``journal_args_for`` is set: then it is kept by the
    provider itself (ALB: tags on the rule), written by running ``set_module`` with ``journal_args_for(backend,
    text)`` and read from ``info_module``'s result, ``journals[backend]``.
    """

    name: str
    scale: WeightScale
    set_module: str
    info_module: str
    set_options: tuple[str, ...]
    info_options: tuple[str, ...]
    set_args_for: Callable[[str, dict[str, dict[str, Any]]], dict[str, Any]]  # arguments without the options
    info_args_for: Callable[[str], dict[str, Any]]
    state_key: str = "read_back"  # the key of the set module's result that holds what the LB shows now
    journal_args_for: Callable[[str, str], dict[str, Any]] | None = None  # None: a file on each load balancer

    @property
    def journal_in_provider(self) -> bool:
        return self.journal_args_for is not None

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.set_options) | set(self.info_options)))

    def check_options(self, options: Mapping[str, Any] | None, param: str) -> dict[str, Any]:
        """``options`` with unknown names refused (a typo must not silently fall back to a default socket)."""
        given = dict(options or {})
        unknown = sorted(str(name) for name in given if name not in self.options)
        if unknown:
            raise TrafficSpecError(
                param,
                f"unknown option(s) {', '.join(unknown)} for provider {self.name}; "
                f"expected some of {', '.join(self.options)}",
            )
        return given

    def set_args(self, backend: str, target: State, options: Mapping[str, Any]) -> dict[str, Any]:
        servers = {name: value.as_dict() for name, value in target[backend].items()}
        args = self.set_args_for(backend, servers)
        args.update({name: value for name, value in options.items() if name in self.set_options})
        return args

    def info_args(self, backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
        args = self.info_args_for(backend)
        args.update({name: value for name, value in options.items() if name in self.info_options})
        return args

    def state_from(self, result: Mapping[str, Any], key: str, backend: str, where: str) -> State:
        """The state of ``backend`` in a module result (``read_back`` of the set module, ``servers`` of info)."""
        raw = result.get(key)
        if not isinstance(raw, Mapping) or backend not in raw:
            raise RolloutError(f"{where}: the {self.name} module returned no state for {backend!r} in {key!r}")
        try:
            return parse_state({backend: raw[backend]}, param=f"{where}.{key}")
        except TrafficSpecError as exc:
            raise RolloutError(f"{where}: unexpected state from the {self.name} module: {exc}") from None


PROVIDERS: dict[str, Provider] = {
    "haproxy": Provider(
        name="haproxy",
        scale=HAPROXY,
        set_module="strata.deploy.haproxy_servers",
        info_module="strata.deploy.traffic_info",
        set_options=("socket", "timeout", "state_file"),
        info_options=("socket", "timeout"),
        set_args_for=_haproxy_set_args,
        info_args_for=_haproxy_info_args,
    ),
    "nginx": Provider(
        name="nginx",
        scale=NGINX,
        set_module="strata.deploy.nginx_upstream",
        info_module="strata.deploy.traffic_info",
        set_options=("path", "test_command", "reload_command", "timeout"),
        info_options=("path",),
        set_args_for=_nginx_set_args,
        info_args_for=_nginx_info_args,
    ),
    "alb": Provider(
        name="alb",
        scale=ALB,
        set_module="strata.deploy.alb_traffic",
        info_module="strata.deploy.traffic_info",
        set_options=(*AWS_OPTIONS, "stickiness"),
        info_options=AWS_OPTIONS,
        set_args_for=_alb_set_args,
        info_args_for=_alb_info_args,
        journal_args_for=_alb_journal_args,
    ),
    "kubernetes": Provider(
        name="kubernetes",
        scale=KUBERNETES,
        set_module="strata.deploy.k8s_traffic",
        info_module="strata.deploy.traffic_info",
        set_options=("namespace", "kubeconfig", "context", "rule", "timeout", "conflict_retries"),
        info_options=("namespace", "kubeconfig", "context", "rule"),
        set_args_for=_k8s_set_args,
        info_args_for=_k8s_info_args,
        journal_args_for=_k8s_journal_args,
    ),
}


def get_provider(name: Any) -> Provider:
    try:
        return PROVIDERS[name]
    except (KeyError, TypeError):
        raise TrafficSpecError("provider", f"expected one of {', '.join(sorted(PROVIDERS))}, got {name!r}") from None


# -- the validated inputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutSpec:
    """Every input of a rollout, validated (``build_spec``)."""

    rollout_id: str
    provider: Provider
    backend: str
    stable: tuple[str, ...]
    canary: tuple[str, ...]
    steps: tuple[Step, ...]
    abort_steps: Any = IMMEDIATE
    abort_pause: float = 0.0
    on_failure: str = ROLLBACK
    resume_policy: str = jr.RESUME
    gated: bool = False
    gate_retries: int = 0
    gate_retry_delay: float = 10.0
    mode: str = MODE_ROLLOUT
    retry_rolled_back: bool = False

    def target(self, percent: float) -> State:
        """Every stable and canary server ``ready`` with the weights that give the canary ``percent``."""
        weights = server_weights(percent, list(self.stable), list(self.canary), self.provider.scale)
        return {self.backend: {name: ServerState(weight, READY) for name, weight in weights.items()}}


def _choice(value: Any, choices: Sequence[str], param: str) -> str:
    if value not in choices:
        raise TrafficSpecError(param, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _names(value: Any, param: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise TrafficSpecError(param, f"expected a non-empty list of server names, got {value!r}")
    seen: set[str] = set()
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name:
            raise TrafficSpecError(f"{param}[{index}]", f"expected a non-empty server name, got {name!r}")
        if name in seen:
            raise TrafficSpecError(f"{param}[{index}]", f"server {name!r} is listed twice")
        seen.add(name)
    return tuple(value)


def build_spec(
    *,
    rollout_id: Any,
    provider: Any,
    backend: Any,
    stable: Any,
    canary: Any,
    steps: Any,
    pause: Any = 0,
    gated: bool = False,
    allow_non_monotonic: bool = False,
    abort_steps: Any = IMMEDIATE,
    abort_pause: Any = 0,
    on_failure: Any = ROLLBACK,
    resume_policy: Any = jr.RESUME,
    gate_retries: Any = 0,
    gate_retry_delay: Any = "10s",
    mode: Any = MODE_ROLLOUT,
    retry_rolled_back: bool = False,
) -> RolloutSpec:
    """Validate every input; each error names the parameter and what was expected (nothing has changed yet)."""
    mode = _choice(mode, MODES, "mode")
    if not isinstance(rollout_id, str) or not rollout_id.strip():
        raise TrafficSpecError("rollout_id", f"expected a non-empty name for this rollout, got {rollout_id!r}")
    if not isinstance(backend, str) or not backend:
        raise TrafficSpecError("backend", f"expected the name of the backend (upstream), got {backend!r}")
    stable_names = _names(stable, "stable")
    canary_names = _names(canary, "canary")
    both = sorted(set(stable_names) & set(canary_names))
    if both:
        raise TrafficSpecError("canary", f"server(s) {', '.join(both)} are in both the stable and the canary set")
    plan = build_plan(steps, default_pause=pause, default_gate=gated, allow_non_monotonic=allow_non_monotonic)
    if not gated:
        for step in plan:
            if step.gate:
                raise TrafficSpecError(f"steps[{step.index}].gate", "the step asks for a gate but no gate is set")
    abort_plan(100, abort_steps, default_pause=abort_pause)  # validates abort_steps whatever the current weight
    if isinstance(gate_retries, bool) or not isinstance(gate_retries, int) or gate_retries < 0:
        raise TrafficSpecError("gate_retries", f"expected an integer of 0 or more, got {gate_retries!r}")
    spec = RolloutSpec(
        rollout_id=rollout_id.strip(),
        provider=get_provider(provider),
        backend=backend,
        stable=stable_names,
        canary=canary_names,
        steps=plan,
        abort_steps=abort_steps,
        abort_pause=parse_duration(abort_pause, "abort_pause"),
        on_failure=_choice(on_failure, ON_FAILURE, "on_failure"),
        resume_policy=_choice(resume_policy, jr.RESUME_POLICIES, "resume_policy"),
        gated=any(step.gate for step in plan),
        gate_retries=gate_retries,
        gate_retry_delay=parse_duration(gate_retry_delay, "gate_retry_delay"),
        mode=mode,
        retry_rolled_back=bool(retry_rolled_back),
    )
    for step in plan:  # every step's weights can be computed (a set that cannot take its share, ...)
        try:
            spec.target(step.weight)
        except TrafficSpecError as exc:
            raise TrafficSpecError(f"steps[{step.index}]", exc.message) from None
    return spec


# -- reading a state -------------------------------------------------------------------------------


def canary_percent(state: State, spec: RolloutSpec) -> float | None:
    """The canary's share (0..100) of the weight of ``spec.backend`` that takes new connections (servers not
    ``ready`` count as 0); ``None`` when no server of the backend takes any."""
    servers = state.get(spec.backend, {})
    effective = {name: (value.weight if value.state == READY else 0) for name, value in servers.items()}
    total = sum(effective.values())
    if not total:
        return None
    return 100.0 * sum(effective.get(name, 0) for name in spec.canary) / total


def check_servers(states: Mapping[str, State], spec: RolloutSpec, *, strict: bool) -> None:
    """Every load balancer has the backend and every stable and canary server; with ``strict``, no other server of
    the backend takes traffic (it would take a share the split does not account for)."""
    for lb, state in states.items():
        if spec.backend not in state:
            known = ", ".join(sorted(state)) or "none"
            raise UnknownTargetError("backend", f"{lb} has no backend {spec.backend!r} (known: {known})")
        servers = state[spec.backend]
        for param, names in (("stable", spec.stable), ("canary", spec.canary)):
            missing = [name for name in names if name not in servers]
            if missing:
                raise UnknownTargetError(
                    param,
                    f"{lb} has no server {', '.join(missing)} in backend {spec.backend} "
                    f"(known: {', '.join(sorted(servers))})",
                )
        if strict:
            named = set(spec.stable) | set(spec.canary)
            others = sorted(n for n, v in servers.items() if n not in named and v.state == READY and v.weight > 0)
            if others:
                raise TrafficSpecError(
                    "stable",
                    f"{lb}: server(s) {', '.join(others)} of backend {spec.backend} take traffic but are neither "
                    "stable nor canary; list them in stable, or set them to weight 0 or maint first",
                )


def _fmt(percent: float | None) -> str:
    if percent is None:
        return "no traffic"
    return f"{percent:.1f}%"


def _fmt_step(weight: float) -> str:
    return f"{int(weight)}%" if float(weight).is_integer() else f"{weight:g}%"


# -- gates -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateOutcome:
    """A gate's verdict with one ``GateResult`` per check (for the journal) and a one-line reason."""

    verdict: str
    reason: str = ""
    results: tuple[jr.GateResult, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED

    def line(self) -> str:
        values = "; ".join(f"{r.name} {r.detail}".strip() for r in self.results)
        text = f"gate {self.verdict}"
        if values:
            text += f": {values}"
        if self.reason and not self.passed:
            text += f" ({self.reason})"
        return text

    def journal_gates(self) -> tuple[jr.GateResult, ...]:
        if self.results:
            return self.results
        return (jr.GateResult(name="gate", passed=self.passed, detail=self.reason),)


# -- the outside world -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What ``Port.apply`` did: ``lb -> state read back`` and whether any load balancer changed."""

    read_back: dict[str, State]
    changed: bool


class Port:
    """The effects a rollout needs; every method may raise the errors named in its docstring."""

    def read(self) -> dict[str, State]:
        """``lb -> state`` of the backend on every load balancer (``RolloutError``)."""
        raise NotImplementedError

    def apply(self, target: State) -> Applied:
        """Set ``target`` on every load balancer, in order, and read it back (``ApplyError``)."""
        raise NotImplementedError

    def gate(self, step: Step | None) -> GateOutcome:
        """Evaluate the gate after ``step`` (``None``: the check before the first change) (``GateError``)."""
        raise NotImplementedError

    def save(self, journal: jr.Journal) -> None:
        """Write the journal on every load balancer (``SaveError``)."""
        raise NotImplementedError

    def wait(self, seconds: float) -> None:
        raise NotImplementedError

    def progress(self, line: str) -> None:
        """Tell the operator now (one line per step as it goes)."""
        raise NotImplementedError

    def now(self) -> datetime:
        raise NotImplementedError


# -- the machine -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    """A step a run applies (or would apply in check mode)."""

    kind: str  # step | abort_step
    index: int
    weight: float
    pause: float
    gate: bool
    target: State

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "index": self.index,
            "weight": self.weight,
            "pause": self.pause,
            "gate": self.gate,
            "servers": {
                server: value.as_dict() for servers in self.target.values() for server, value in servers.items()
            },
        }


@dataclass
class Outcome:
    status: str
    ok: bool
    changed: bool
    message: str
    decision: str
    journal: jr.Journal | None = None
    observed: dict[str, float | None] = field(default_factory=dict)
    plan: list[PlannedStep] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)


class Rollout:
    """One run of a rollout (see the module docstring for the rules)."""

    def __init__(self, spec: RolloutSpec, port: Port, who: str, *, check_mode: bool = False) -> None:
        self.spec = spec
        self.port = port
        self.who = who
        self.check_mode = check_mode
        self.journal: jr.Journal | None = None
        self.changed = False
        self.observed: dict[str, float | None] = {}
        self.plan: list[PlannedStep] = []
        self.gates: list[dict[str, Any]] = []
        self.decision = ""

    # -- helpers ---------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.port.progress(f"[canary {self.spec.rollout_id}] {text}")

    def _observe(self, states: Mapping[str, State]) -> str:
        self.observed = {lb: canary_percent(state, self.spec) for lb, state in states.items()}
        return ", ".join(f"{lb} {_fmt(percent)}" for lb, percent in self.observed.items())

    def _apply(self, target: State) -> str:
        applied = self.port.apply(target)
        self.changed = self.changed or applied.changed
        return self._observe(applied.read_back)

    @property
    def _journal(self) -> jr.Journal:
        if self.journal is None:  # every path that records a step saved a journal first
            raise RolloutError("internal error: no journal to record in")
        return self.journal

    def _save(self, journal: jr.Journal) -> None:
        self.port.save(journal)
        self.journal = journal
        self.changed = True

    def _outcome(self, status: str, message: str) -> Outcome:
        wanted = ROLLED_BACK if self.spec.mode == MODE_ROLLBACK else DONE
        return Outcome(
            status=status,
            ok=status in (wanted, PLANNED),
            changed=self.changed,
            message=message,
            decision=self.decision,
            journal=self.journal,
            observed=dict(self.observed),
            plan=list(self.plan),
            gates=list(self.gates),
        )

    def _gate(self, step: Step | None) -> GateOutcome:
        """The gate's outcome; an inconclusive verdict is asked again ``gate_retries`` times (not before the first
        change, when no data is the normal case)."""
        retries = 0 if step is None else self.spec.gate_retries
        attempt = 0
        while True:
            try:
                outcome = self.port.gate(step)
            except GateError as exc:
                return GateOutcome(ERROR, exc.message, (jr.GateResult("gate", False, exc.message),))
            if outcome.verdict != INCONCLUSIVE or attempt >= retries:
                return outcome
            attempt += 1
            self._say(f"{outcome.line()}; asking again in {self.spec.gate_retry_delay:g}s ({attempt}/{retries})")
            self.port.wait(self.spec.gate_retry_delay)

    def _record_gate(self, step: Step, outcome: GateOutcome) -> None:
        self.gates.append(
            {
                "step_index": step.index,
                "weight": step.weight,
                "verdict": outcome.verdict,
                "reason": outcome.reason,
                "checks": [{"name": r.name, "passed": r.passed, "detail": r.detail} for r in outcome.results],
            }
        )

    # -- deciding --------------------------------------------------------------------------------

    def run(self, found: jr.Journal | None) -> Outcome:
        """Read, decide, drive. Bad input and unknown targets raise before any change; everything after the first
        change ends in an ``Outcome`` whose message says what state was left."""
        states = self.port.read()
        check_servers(states, self.spec, strict=False)
        self._say(f"{self.spec.provider.name} backend {self.spec.backend}: canary now {self._observe(states)}")
        try:
            if self.spec.mode == MODE_ROLLBACK:
                return self._run_rollback(found, states)
            return self._run_rollout(found, states)
        except SaveError as exc:
            if not self.changed:
                return self._outcome(REFUSED, f"{exc.message}. Nothing was changed.")
            return self._outcome(
                INTERRUPTED,
                f"{exc.message}. The traffic was left as last read back ({self._fmt_observed()}) and the journals "
                "of the load balancers may lag it: fix the cause, check with strata.deploy.traffic_info, run again.",
            )

    def _start_state(self, states: Mapping[str, State]) -> State:
        first = next(iter(states.values()))
        return {self.spec.backend: dict(first[self.spec.backend])}

    def _run_rollout(self, found: jr.Journal | None, states: Mapping[str, State]) -> Outcome:
        spec = self.spec
        if found is not None and found.rollout_id != spec.rollout_id and found.phase not in jr.FINISHED:
            self.decision = "refuse"
            return self._outcome(
                REFUSED,
                f"rollout {found.rollout_id!r} is in flight on backend {spec.backend} (phase {found.phase}, "
                f"after step {found.step_index}); finish it (run again with rollout_id {found.rollout_id}) or "
                f"roll it back (mode rollback) before starting {spec.rollout_id!r}. Nothing was changed.",
            )
        retry = found is not None and found.phase == jr.ROLLED_BACK and spec.retry_rolled_back
        if found is None or found.rollout_id != spec.rollout_id or retry:
            self.decision = "start"
            check_servers(states, spec, strict=True)
            return self._start(found, states)
        self.journal = found
        if found.phase == jr.DONE:
            self.decision = "nothing"
            return self._outcome(DONE, f"rollout {spec.rollout_id} was already done ({found.updated_at})")
        if found.phase == jr.ROLLED_BACK:
            self.decision = "refuse"
            reason = next((e.message for e in reversed(found.events) if e.action == "abort"), "")
            return self._outcome(
                REFUSED,
                f"rollout {spec.rollout_id} was rolled back ({found.updated_at}{': ' + reason if reason else ''}); "
                "use a new rollout_id (or retry_rolled_back) to try again. Nothing was changed.",
            )
        decision = jr.resume_decision(found, spec.resume_policy)
        self._say(decision.reason)
        if decision.action == jr.RESUME:
            self.decision = "resume"
            return self._resume(found, decision)
        self.decision = "rollback"
        return self._rollback(found, decision.reason, ())

    def _run_rollback(self, found: jr.Journal | None, states: Mapping[str, State]) -> Outcome:
        """Mode rollback: the canary back to 0% whatever rollout put it there."""
        self.decision = "rollback"
        if found is not None and found.phase in (jr.RUNNING, jr.PAUSED, jr.ABORTING):
            return self._rollback(found, f"rollback of rollout {found.rollout_id} requested (mode rollback)", ())
        if found is not None and found.phase == jr.ROLLED_BACK:
            # whatever takes traffic now was put back deliberately after that rollback (playbooks/rollback.yml does)
            self.decision = "nothing"
            self.journal = found
            away = [lb for lb, percent in self.observed.items() if percent]
            note = f"; the canary servers take traffic again on {', '.join(away)}" if away else ""
            return self._outcome(ROLLED_BACK, f"rollout {found.rollout_id} was already rolled back{note}")
        if all(not percent for percent in self.observed.values()):
            self.decision = "nothing"
            self.journal = found
            done = f" (rollout {found.rollout_id} is {found.phase})" if found is not None else ""
            return self._outcome(ROLLED_BACK, f"the canary takes no traffic: nothing to roll back{done}")
        what = f"rollout {found.rollout_id} ({found.phase})" if found is not None else "the canary"
        started = jr.new_journal(
            self.spec.rollout_id, current=self._start_state(states), who=self.who, now=self.port.now()
        )
        return self._rollback(started, f"rollback of {what} requested (mode rollback)", ())

    # -- going forward ---------------------------------------------------------------------------

    def _preflight_gate(self) -> Outcome | None:
        """Evaluate the gate once before any change: only errors matter (the canary has no traffic yet)."""
        if not self.spec.gated:
            return None
        outcome = self._gate(None)
        if outcome.verdict == ERROR:
            return self._outcome(
                REFUSED, f"the gate cannot be evaluated: {outcome.reason}. Nothing was changed (checked first)."
            )
        self._say(f"gate checked before the first change: it evaluates (verdict now: {outcome.verdict})")
        return None

    def _forward_plan(self, first: int) -> None:
        self.plan = [
            PlannedStep("step", step.index, step.weight, step.pause, step.gate, self.spec.target(step.weight))
            for step in self.spec.steps[first:]
        ]

    def _print_plan(self) -> None:
        total = len(self.spec.steps)
        for planned in self.plan:
            kind = "step" if planned.kind == "step" else "rollback step"
            number = f"{planned.index + 1}/{total}" if planned.kind == "step" else str(planned.index + 1)
            weights = ", ".join(
                f"{server}={value.weight}" for servers in planned.target.values() for server, value in servers.items()
            )
            extra = f", pause {planned.pause:g}s" if planned.pause else ""
            extra += ", gate" if planned.gate else ""
            self._say(f"would run {kind} {number}: canary {_fmt_step(planned.weight)} ({weights}){extra}")

    def _start(self, found: jr.Journal | None, states: Mapping[str, State]) -> Outcome:
        self._forward_plan(0)
        refused = self._preflight_gate()
        if refused:
            return refused
        if self.check_mode:
            self._print_plan()
            self.changed = True
            return self._outcome(PLANNED, f"would run {len(self.plan)} step(s) of rollout {self.spec.rollout_id}")
        if found is not None:
            self._say(f"the journal of finished rollout {found.rollout_id} ({found.phase}) is replaced")
        journal = jr.new_journal(
            self.spec.rollout_id, current=self._start_state(states), who=self.who, now=self.port.now()
        )
        self._save(journal)
        return self._steps(0)

    def _resume(self, found: jr.Journal, decision: jr.Decision) -> Outcome:
        self._forward_plan(decision.next_step)
        refused = self._preflight_gate()
        if refused:
            return refused
        if self.check_mode:
            self._print_plan()
            self.changed = bool(self.plan)
            return self._outcome(PLANNED, f"would resume rollout {self.spec.rollout_id} at step {decision.next_step}")
        self._save(jr.resume(found, who=self.who, message=decision.reason, now=self.port.now()))
        return self._steps(decision.next_step)

    def _steps(self, first: int) -> Outcome:
        spec = self.spec
        total = len(spec.steps)
        for step in spec.steps[first:]:
            target = spec.target(step.weight)
            label = f"step {step.index + 1}/{total}"
            try:
                seen = self._apply(target)
            except ApplyError as exc:
                return self._interrupted(step, exc)
            wait = f"; pausing {step.pause:g}s" if step.pause else ""
            self._say(f"{label}: canary {_fmt_step(step.weight)} -> observed {seen}{wait}")
            if step.pause:
                self.port.wait(step.pause)
            gates: tuple[jr.GateResult, ...] = ()
            if step.gate:
                outcome = self._gate(step)
                self._record_gate(step, outcome)
                self._say(f"{label}: {outcome.line()}")
                if not outcome.passed:
                    return self._gate_failed(step, target, outcome)
                gates = outcome.journal_gates()
            self._save(
                jr.advance(
                    self._journal,
                    step_index=step.index,
                    after=target,
                    who=self.who,
                    gates=gates,
                    message=f"canary {_fmt_step(step.weight)}; observed {seen}",
                    now=self.port.now(),
                )
            )
        self._save(jr.mark_done(self._journal, who=self.who, message="every step passed", now=self.port.now()))
        self._say(f"done: canary 100% on every load balancer ({total} step(s))")
        return self._outcome(DONE, f"rollout {spec.rollout_id} done: the canary takes 100%")

    def _gate_failed(self, step: Step, target: State, outcome: GateOutcome) -> Outcome:
        spec = self.spec
        what = f"the gate of step {step.index + 1} ({_fmt_step(step.weight)}) did not pass: {outcome.line()}"
        if spec.on_failure == ROLLBACK:
            advanced = jr.advance(
                self._journal,
                step_index=step.index,
                after=target,
                who=self.who,
                gates=outcome.journal_gates(),
                message=what,
                now=self.port.now(),
            )
            return self._rollback(advanced, what, outcome.journal_gates())
        if spec.on_failure == FREEZE:
            safe = self._journal.desired
            try:
                seen = self._apply(safe)
            except ApplyError as exc:
                message = f"{what}; returning to the last safe state failed: {exc.message}"
                self._save(jr.pause(self._journal, who=self.who, message=message, now=self.port.now()))
                return self._outcome(
                    INTERRUPTED,
                    f"{what}. Returning to the last safe state failed: {exc.message}; the journal is paused. "
                    "Check the load balancers (strata.deploy.traffic_info) and run again.",
                )
            message = f"{what}; frozen at the last safe state (observed {seen})"
            self._save(jr.pause(self._journal, who=self.who, message=message, now=self.port.now()))
            self._say(message)
            return self._outcome(
                FROZEN,
                f"{what}. The traffic is back at the last state whose gates passed ({seen}) and the rollout is "
                "paused: run again to retry that step, or roll it back.",
            )
        message = f"{what}; paused with the canary at {_fmt_step(step.weight)} ({self._fmt_observed()})"
        self._save(jr.pause(self._journal, who=self.who, message=message, now=self.port.now()))
        self._say(message)
        return self._outcome(
            PAUSED,
            f"{what}. The traffic stays where it is and the rollout is paused: run again to evaluate this step's "
            "gate again and go on, or roll it back.",
        )

    def _fmt_observed(self) -> str:
        return ", ".join(f"{lb} {_fmt(percent)}" for lb, percent in self.observed.items())

    def _interrupted(self, step: Step, exc: ApplyError) -> Outcome:
        """A step could not be applied everywhere: every load balancer back to the last safe state, then pause."""
        what = f"step {step.index + 1} ({_fmt_step(step.weight)}) could not be applied: {exc.message}"
        self._say(what)
        try:
            seen = self._apply(self._journal.desired)
            left = f"every load balancer is back at the last safe state (observed {seen})"
        except ApplyError as again:
            left = f"returning to the last safe state failed too ({again.message}): check the load balancers"
        self._say(left)
        try:
            self._save(jr.pause(self._journal, who=self.who, message=f"{what}; {left}", now=self.port.now()))
        except SaveError as failed:
            left += f"; the journal could not be written ({failed.message})"
        return self._outcome(INTERRUPTED, f"{what}; {left}. The rollout is paused: fix the cause and run again.")

    # -- going back ------------------------------------------------------------------------------

    def _rollback(self, journal: jr.Journal, reason: str, gates: Sequence[jr.GateResult]) -> Outcome:
        spec = self.spec
        current = [percent for percent in self.observed.values() if percent is not None]
        start = max(current) if current else 100.0
        steps = abort_plan(round(min(start, 100.0), 6), spec.abort_steps, default_pause=spec.abort_pause)
        if not steps:
            steps = (Step(index=0, weight=0.0),)
        self.plan = [PlannedStep("abort_step", s.index, s.weight, s.pause, False, spec.target(s.weight)) for s in steps]
        if self.check_mode:
            self._print_plan()
            self.changed = True
            return self._outcome(PLANNED, f"would roll back rollout {journal.rollout_id}: {reason}")
        if journal.phase != jr.ABORTING:
            journal = jr.mark_abort(journal, who=self.who, message=reason, gates=gates, now=self.port.now())
        self._save(journal)
        self._say(f"rolling back: {reason}")
        for position, step in enumerate(steps):
            target = spec.target(step.weight)
            label = f"rollback {position + 1}/{len(steps)}"
            try:
                seen = self._apply(target)
            except ApplyError as exc:
                return self._outcome(
                    INTERRUPTED,
                    f"{label} ({_fmt_step(step.weight)}) could not be applied: {exc.message}. The journal stays in "
                    "phase aborting: run again to finish the rollback.",
                )
            last = position == len(steps) - 1
            wait = f"; pausing {step.pause:g}s" if step.pause and not last else ""
            self._say(f"{label}: canary {_fmt_step(step.weight)} -> observed {seen}{wait}")
            self._save(
                jr.abort_step(
                    self._journal, after=target, who=self.who, message=f"observed {seen}", now=self.port.now()
                )
            )
            if step.pause and not last:
                self.port.wait(step.pause)
        final = spec.target(0)
        self._save(jr.mark_rolled_back(self._journal, who=self.who, after=final, message=reason, now=self.port.now()))
        self._say(f"rolled back: canary 0% on every load balancer ({self._fmt_observed()})")
        return self._outcome(ROLLED_BACK, f"rollout {journal.rollout_id} rolled back to 0%: {reason}")


# -- choosing among the journals found on the load balancers ----------------------------------------


def pick_journal(found: Mapping[str, jr.Journal | None]) -> jr.Journal | None:
    """The most advanced journal among those read from the load balancers (a kill between two writes leaves
    them one event apart); ``None`` when no load balancer has one."""
    journals = [journal for journal in found.values() if journal is not None]
    if not journals:
        return None
    return max(journals, key=lambda journal: (journal.updated_at, len(journal.events)))
