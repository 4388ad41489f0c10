# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS ALB client: the weighted ``ForwardConfig`` of ONE listener rule, and its rollout journal as tags.

- One small method per API call (``describe_rules``, ``modify_rule``, ``describe_tags``, ``add_tags``,
  ``remove_tags``), each through ``_call``: botocore's own retries are turned off (``total_max_attempts=1``) and
  ``_retry.retry_call`` retries only throttling and transient codes (``TRANSIENT_CODES``, HTTP 5xx, connection
  errors), with full-jitter backoff, bounded in attempts and in time. Every other error is typed at once:
  ``AlbNotFoundError`` (rule or target group), ``AlbAuthError`` (no or bad credentials), ``AlbApiError``.
- ``plan`` reads the rule, normalises its forward action (target group -> weight, stickiness), checks the desired
  weights (0..999, target groups that are in the rule, not all 0) and computes the change with the traffic core
  (``_traffic.state``), so an unchanged split is no change. ``apply`` sends ONE ``modify_rule`` with the rule's
  actions where only the forward action's ``ForwardConfig`` differs (conditions, priority, other actions and
  other rules are never sent), then reads the rule back and verifies it.
- Target groups are named by their name (the part of the ARN after ``targetgroup/``), so a state reads like the
  HAProxy/nginx ones: ``{rule_arn: {target_group_name: ServerState(weight, "ready")}}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._retry import retry_call
from ansible_collections.strata.deploy.plugins.module_utils._traffic import compact
from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficError,
    TrafficSpecError,
    TrafficVerifyError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import (
    READY,
    ServerSpec,
    ServerState,
    compute_changes,
    diff_rows,
    verify,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import ALB

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )
except ImportError:
    HAS_BOTO3 = False

    class _MissingBotocoreError(Exception):
        """Stands for every botocore exception when botocore is not installed (nothing raises it)."""

    BotoCoreError = ClientError = ConnectionClosedError = EndpointConnectionError = _MissingBotocoreError
    NoCredentialsError = NoRegionError = PartialCredentialsError = ProfileNotFound = _MissingBotocoreError
    ReadTimeoutError = _MissingBotocoreError
    AWS_ERRORS: tuple[type[BaseException], ...] = ()
else:
    HAS_BOTO3 = True
    AWS_ERRORS = (ClientError, BotoCoreError)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Optional

    from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import Change, DiffRow, State

    # (id, port); Optional because pylint checks module_utils for older Pythons, where ``int | None`` fails at runtime
    Target = tuple[str, Optional[int]]  # noqa: UP045

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "PriorRequestNotComplete",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "AccessDenied",
        "AccessDeniedException",
    }
)
NOT_FOUND_CODES = frozenset({"RuleNotFound", "TargetGroupNotFound", "ListenerNotFound", "LoadBalancerNotFound"})
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 5


class AlbError(TrafficError):
    """An error of the ALB client; ``message`` says what was tried."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class AlbApiError(AlbError):
    """The AWS API refused a call (``code`` is AWS's error code)."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        self.operation = operation
        self.code = code
        super().__init__(f"{operation}: {code}: {message}")


class AlbNotFoundError(AlbApiError):
    """The rule (or a target group, listener, load balancer) does not exist in this account and region."""


class AlbAuthError(AlbError):
    """No credentials, or credentials AWS does not accept."""


class AlbVerifyError(AlbError, TrafficVerifyError):
    """``modify_rule`` succeeded but the rule read back shows other weights."""

    def __init__(self, mismatches: Sequence[object]) -> None:
        TrafficVerifyError.__init__(self, mismatches)
        self.message = str(self)


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return str(response.get("Error", {}).get("Code") or "")
    return ""


def is_transient(exc: BaseException) -> bool:
    """Throttling, AWS-side 5xx and dropped connections: worth another try. Anything else is not."""
    if HAS_BOTO3 and isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)):
        return True
    if error_code(exc) in TRANSIENT_CODES:
        return True
    response = getattr(exc, "response", None)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, Mapping) else None
    return isinstance(status, int) and status >= 500


def typed_error(operation: str, exc: BaseException) -> AlbError:
    """The typed error for a botocore exception that was not (or no longer) worth retrying."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return AlbAuthError(
            f"{operation}: {exc}: set access_key and secret_key, or profile, or the AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY environment variables, or run with an instance role"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        text = exc.response.get("Error", {}).get("Message") or str(exc)
        if code in NOT_FOUND_CODES:
            return AlbNotFoundError(operation, code, text)
        if code in AUTH_CODES:
            return AlbAuthError(f"{operation}: {code}: {text}: check the credentials and their permissions")
        suffix = " (throttled or unavailable after every retry)" if is_transient(exc) else ""
        return AlbApiError(operation, code, text + suffix)
    return AlbError(f"{operation}: {exc}")


def parse_target(raw: Any, param: str) -> Target:
    """``i-0abc``, ``10.0.1.5:8080`` or ``{id: ..., port: ...}`` as ``(id, port or None)``."""
    if isinstance(raw, Mapping):
        target_id, port = raw.get("id"), raw.get("port")
    elif isinstance(raw, str) and raw.rsplit(":", 1)[-1].isdigit() and ":" in raw:
        target_id, port = raw.rsplit(":", 1)[0], int(raw.rsplit(":", 1)[1])
    else:
        target_id, port = raw, None
    if not isinstance(target_id, str) or not target_id:
        raise TrafficSpecError(param, f"expected a target id (instance id or IP, optionally :port), got {raw!r}")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise TrafficSpecError(param, f"expected a port between 1 and 65535, got {port!r}")
    return (target_id, port)


def target_api(target: Target) -> dict[str, Any]:
    return {"Id": target[0]} if target[1] is None else {"Id": target[0], "Port": target[1]}


def target_group_name(arn_or_name: str) -> str:
    """``blue`` for ``arn:aws:elasticloadbalancing:...:targetgroup/blue/0123abcd`` (a name stays a name)."""
    marker = ":targetgroup/"
    if marker in arn_or_name:
        return arn_or_name.split(marker, 1)[1].split("/", 1)[0]
    return arn_or_name


def check_alb_weight(value: Any, param: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ALB.max_weight:
        raise TrafficSpecError(param, f"expected an integer weight between 0 and {ALB.max_weight}, got {value!r}")
    return value


@dataclass(frozen=True)
class Stickiness:
    """Target group stickiness of a forward action (``duration`` is ``None`` when disabled)."""

    enabled: bool = False
    duration: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "duration": self.duration}

    def as_api(self) -> dict[str, Any]:
        if not self.enabled:
            return {"Enabled": False}
        return {"Enabled": True, "DurationSeconds": self.duration}


def parse_stickiness(raw: Mapping[str, Any] | None, current: Stickiness) -> Stickiness:
    """The desired stickiness (``None``: keep ``current``); a duration must be 1..604800 seconds when enabled."""
    if raw is None:
        return current
    enabled = raw.get("enabled")
    enabled = current.enabled if enabled is None else bool(enabled)
    if not enabled:
        return Stickiness(False, None)
    duration = raw.get("duration")
    if duration is None:
        duration = current.duration or 3600
    if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 604800:
        raise TrafficSpecError("stickiness.duration", f"expected seconds between 1 and 604800, got {duration!r}")
    return Stickiness(True, duration)


@dataclass(frozen=True)
class Forward:
    """The normalised forward action of a rule: ``weights`` by target group name, in the rule's order."""

    index: int
    arns: dict[str, str]  # name -> ARN
    weights: dict[str, int]
    stickiness: Stickiness


def read_forward(rule: Mapping[str, Any]) -> Forward:
    """The rule's forward action, normalised (a single ``TargetGroupArn`` is one group of weight 1)."""
    arn = rule.get("RuleArn", "the rule")
    for index, action in enumerate(rule.get("Actions") or []):
        if action.get("Type") != "forward":
            continue
        config = action.get("ForwardConfig") or {}
        groups = config.get("TargetGroups") or []
        if not groups and action.get("TargetGroupArn"):
            groups = [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
        arns: dict[str, str] = {}
        weights: dict[str, int] = {}
        for group in groups:
            name = target_group_name(group["TargetGroupArn"])
            arns[name] = group["TargetGroupArn"]
            weights[name] = int(group.get("Weight", 1))
        sticky = config.get("TargetGroupStickinessConfig") or {}
        stickiness = (
            Stickiness(True, int(sticky.get("DurationSeconds") or 0) or None)
            if sticky.get("Enabled")
            else Stickiness(False, None)
        )
        return Forward(index, arns, weights, stickiness)
    kinds = ", ".join(str(a.get("Type")) for a in rule.get("Actions") or []) or "none"
    raise TrafficSpecError("rule_arn", f"{arn} has no forward action to weigh (its actions: {kinds})")


def forward_actions(rule: Mapping[str, Any], forward: Forward, weights: Mapping[str, int], sticky: Stickiness) -> list:
    """The rule's actions with only the forward action's ``ForwardConfig`` replaced (for ``modify_rule``)."""
    actions = []
    for index, action in enumerate(rule.get("Actions") or []):
        if index != forward.index:
            actions.append(dict(action))
            continue
        new: dict[str, Any] = {
            "Type": "forward",
            "ForwardConfig": {
                "TargetGroups": [
                    {"TargetGroupArn": forward.arns[name], "Weight": weights[name]} for name in forward.weights
                ],
                "TargetGroupStickinessConfig": sticky.as_api(),
            },
        }
        if "Order" in action:
            new["Order"] = action["Order"]
        actions.append(new)
    return actions


@dataclass(frozen=True)
class Plan:
    """What ``apply`` would send: the rule as read, the change set and the stickiness before/after."""

    rule: dict[str, Any]
    forward: Forward
    current: State
    changes: list[Change]
    rows: list[DiffRow]
    weights: dict[str, int]
    stickiness_before: Stickiness
    stickiness_after: Stickiness

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.stickiness_before != self.stickiness_after


class AlbClient:
    """The calls on one listener rule; ``elbv2`` is a boto3 ``elbv2`` client (``AlbClient.connect`` makes one)."""

    def __init__(
        self,
        elbv2: Any,
        *,
        attempts: int = DEFAULT_RETRIES,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        deadline: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> None:
        self.elbv2 = elbv2
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.deadline = deadline
        self.sleep = sleep
        self.on_retry = on_retry
        self.retried = 0

    @classmethod
    def connect(
        cls,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        validate_certs: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> AlbClient:
        """A client with botocore's retries off (this client retries) and ``timeout`` on connect and read.
        Unset options fall back to boto3's usual chain (``AWS_*`` variables, shared config, instance role)."""
        if not HAS_BOTO3:
            raise AlbError("boto3 and botocore are required on the host that runs the module")
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key or None,
                aws_secret_access_key=secret_key or None,
                aws_session_token=session_token or None,
                profile_name=profile or None,
                region_name=region or None,
            )
            config = Config(
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"total_max_attempts": 1, "mode": "standard"},
            )
            elbv2 = session.client("elbv2", endpoint_url=endpoint_url or None, verify=validate_certs, config=config)
        except AWS_ERRORS as exc:
            if isinstance(exc, NoRegionError):
                raise AlbError("region: no AWS region set; set region (or AWS_REGION / AWS_DEFAULT_REGION)") from None
            if isinstance(exc, ProfileNotFound):
                raise AlbAuthError(f"profile: {exc}") from None
            raise AlbError(f"creating the elbv2 client: {exc}") from None
        return cls(elbv2, attempts=max(1, retries + 1), deadline=max(timeout * 6, 30.0))

    # -- one wrapper per API call ----------------------------------------------------------------

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.elbv2, operation)

        def note(attempt: int, exc: BaseException, delay: float) -> None:
            self.retried += 1
            if self.on_retry is not None:
                self.on_retry(attempt, exc, delay)

        try:
            return retry_call(
                lambda: method(**kwargs),
                catch=AWS_ERRORS,
                is_transient=is_transient,
                attempts=self.attempts,
                base_delay=self.base_delay,
                max_delay=self.max_delay,
                deadline=self.deadline,
                sleep=self.sleep,
                on_retry=note,
            )
        except AWS_ERRORS as exc:
            raise typed_error(operation, exc) from None

    def describe_rule(self, rule_arn: str) -> dict[str, Any]:
        rules = self._call("describe_rules", RuleArns=[rule_arn]).get("Rules") or []
        if not rules:
            raise AlbNotFoundError("describe_rules", "RuleNotFound", f"no rule {rule_arn}")
        return rules[0]

    def modify_rule(self, rule_arn: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("modify_rule", RuleArn=rule_arn, Actions=actions)

    def describe_tags(self, arn: str) -> dict[str, str]:
        found = self._call("describe_tags", ResourceArns=[arn]).get("TagDescriptions") or []
        tags = found[0].get("Tags") or [] if found else []
        return {tag["Key"]: tag.get("Value", "") for tag in tags}

    def add_tags(self, arn: str, tags: Mapping[str, str]) -> None:
        self._call("add_tags", ResourceArns=[arn], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def remove_tags(self, arn: str, keys: Sequence[str]) -> None:
        self._call("remove_tags", ResourceArns=[arn], TagKeys=list(keys))

    # -- weights ---------------------------------------------------------------------------------

    def current_state(self, rule_arn: str) -> State:
        forward = read_forward(self.describe_rule(rule_arn))
        return {rule_arn: {name: ServerState(weight, READY) for name, weight in forward.weights.items()}}

    def plan(self, rule_arn: str, weights: Mapping[str, Any], stickiness: Mapping[str, Any] | None = None) -> Plan:
        """Read the rule and compute the change; bad input raises before anything is sent."""
        rule = self.describe_rule(rule_arn)
        forward = read_forward(rule)
        current = {rule_arn: {name: ServerState(weight, READY) for name, weight in forward.weights.items()}}
        wanted: dict[str, int] = {}
        for given, weight in weights.items():
            name = target_group_name(str(given))
            if name not in forward.weights:
                known = ", ".join(forward.weights) or "none"
                raise UnknownTargetError(
                    f"target_groups.{given}",
                    f"target group {name} is not in the rule's forward action (it has: {known})",
                )
            if name in wanted:
                raise TrafficSpecError(f"target_groups.{given}", f"target group {name} is given twice")
            wanted[name] = check_alb_weight(weight, f"target_groups.{given}")
        after = dict(forward.weights, **wanted)
        if not any(after.values()):
            raise TrafficSpecError("target_groups", "every weight of the rule would be 0: the rule would serve 503s")
        desired = {rule_arn: {name: ServerSpec(weight=w) for name, w in wanted.items()}}
        sticky = parse_stickiness(stickiness, forward.stickiness)
        return Plan(
            rule=rule,
            forward=forward,
            current=current,
            changes=compute_changes(desired, current),
            rows=diff_rows({rule_arn: {n: ServerSpec(weight=w) for n, w in after.items()}}, current, lb=rule_arn),
            weights=after,
            stickiness_before=forward.stickiness,
            stickiness_after=sticky,
        )

    def apply(self, rule_arn: str, plan: Plan) -> State:
        """ONE ``modify_rule`` (only this rule, only its forward config), then read back and verify."""
        self.modify_rule(rule_arn, forward_actions(plan.rule, plan.forward, plan.weights, plan.stickiness_after))
        rule = self.describe_rule(rule_arn)
        forward = read_forward(rule)
        read_back = {rule_arn: {name: ServerState(weight, READY) for name, weight in forward.weights.items()}}
        target = {rule_arn: {name: ServerState(weight, READY) for name, weight in plan.weights.items()}}
        mismatches: list[Any] = verify(target, read_back)
        if forward.stickiness != plan.stickiness_after:
            mismatches.append(f"stickiness: expected {plan.stickiness_after}, found {forward.stickiness}")
        if mismatches:
            raise AlbVerifyError(mismatches)
        return read_back

    # -- targets ---------------------------------------------------------------------------------

    def describe_target_health(self, tg_arn: str, targets: Sequence[Target] | None = None) -> dict[Target, str]:
        """``(id, port) -> state`` (``healthy``, ``draining``, ``unused`` ...) of the targets of a target group."""
        kwargs: dict[str, Any] = {"TargetGroupArn": tg_arn}
        if targets:
            kwargs["Targets"] = [target_api(t) for t in targets]
        found = self._call("describe_target_health", **kwargs).get("TargetHealthDescriptions") or []
        return {
            (d["Target"]["Id"], d["Target"].get("Port")): str((d.get("TargetHealth") or {}).get("State") or "")
            for d in found
        }

    def register_targets(self, tg_arn: str, targets: Sequence[Target]) -> None:
        self._call("register_targets", TargetGroupArn=tg_arn, Targets=[target_api(t) for t in targets])

    def deregister_targets(self, tg_arn: str, targets: Sequence[Target]) -> None:
        self._call("deregister_targets", TargetGroupArn=tg_arn, Targets=[target_api(t) for t in targets])

    def wait_drained(
        self,
        tg_arn: str,
        targets: Sequence[Target],
        timeout: float,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> dict[Target, str]:
        """Poll ``describe_target_health`` until no target of ``targets`` is ``draining`` or ``timeout`` seconds
        passed (never the 300 s default deregistration delay blindly); returns the targets still draining."""
        deadline = clock() + timeout
        while True:
            health = self.describe_target_health(tg_arn, targets)
            draining = {t: state for t, state in health.items() if state == "draining"}
            left = deadline - clock()
            if not draining or left <= 0:
                return draining
            self.sleep(min(interval, left))

    # -- the journal -----------------------------------------------------------------------------

    def read_journal(self, rule_arn: str) -> str | None:
        """The journal JSON kept in the rule's tags, or ``None``."""
        return compact.decode_tags(self.describe_tags(rule_arn))

    def write_journal(self, rule_arn: str, text: str) -> int:
        """Header and chunks in ONE ``add_tags``, then the chunks of an older, longer journal removed; returns the
        number of tags written."""
        tags = compact.encode_tags(text)
        current = self.describe_tags(rule_arn)
        self.add_tags(rule_arn, tags)
        stale = compact.stale_keys(current, tags)
        if stale:
            self.remove_tags(rule_arn, stale)
        return len(tags)
