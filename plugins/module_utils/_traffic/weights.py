# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Canary percentage -> integer weights per provider, and the split those weights really give.

Providers weigh either servers (HAProxy, nginx) or groups (an ALB target group, a Kubernetes backendRef).
The same function serves both: a group is a set of one "server".

How weights are chosen: the total ``T`` is the largest integer for which every server of a set with a
positive share stays within the provider's maximum (so precision is as high as the provider allows),
then ``T`` is split between the stable and canary sets by largest remainder, then each set's total is
spread evenly over its servers (the first servers in the given order take the remainder). The result is
deterministic, so the same percentage always gives the same weights (idempotent runs).
When a set's share is smaller than one weight unit per server, some of its servers get 0: the split
stays accurate and ``observed_split`` reports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import TrafficSpecError
from ansible_collections.strata.deploy.plugins.module_utils._traffic.plan import parse_percent


@dataclass(frozen=True)
class WeightScale:
    """What a provider accepts as a weight."""

    provider: str
    max_weight: int
    per_server: bool = True
    zero_is_down: bool = False


HAPROXY = WeightScale("haproxy", 256)
# nginx has no upper bound worth using and no weight 0: 0 is rendered as ``down`` by the nginx client.
# 100 per server keeps the smooth weighted round-robin cycle short.
NGINX = WeightScale("nginx", 100, zero_is_down=True)
ALB = WeightScale("alb", 999, per_server=False)
KUBERNETES = WeightScale("kubernetes", 1_000_000, per_server=False)
SCALES: dict[str, WeightScale] = {scale.provider: scale for scale in (HAPROXY, NGINX, ALB, KUBERNETES)}


def get_scale(scale: WeightScale | str) -> WeightScale:
    """The ``WeightScale`` itself, or the one named ``haproxy``, ``nginx``, ``alb`` or ``kubernetes``."""
    if isinstance(scale, WeightScale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise TrafficSpecError("provider", f"expected one of {', '.join(sorted(SCALES))}, got {scale!r}") from None


def check_weight(value: Any, scale: WeightScale | str, param: str) -> int:
    """An integer weight within the provider's range (0..max), or a ``TrafficSpecError`` naming ``param``."""
    limits = get_scale(scale)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limits.max_weight:
        raise TrafficSpecError(
            param, f"expected an integer weight between 0 and {limits.max_weight} for {limits.provider}, got {value!r}"
        )
    return value


def _check_names(names: Sequence[str], param: str) -> list[str]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TrafficSpecError(param, f"expected a list of server names, got {type(names).__name__}")
    seen: set[str] = set()
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise TrafficSpecError(f"{param}[{index}]", f"expected a non-empty server name, got {name!r}")
        if name in seen:
            raise TrafficSpecError(f"{param}[{index}]", f"server {name!r} is listed twice")
        seen.add(name)
    return list(names)


def _largest_remainder(total: int, quotas: Sequence[Fraction]) -> list[int]:
    """Integers that sum to ``total``, each the floor or ceiling of its quota (quotas sum to ``total``)."""
    floors = [int(quota) for quota in quotas]  # quotas are >= 0, int() is floor
    left = total - sum(floors)
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def _spread(total: int, names: Sequence[str]) -> dict[str, int]:
    base, extra = divmod(total, len(names))
    return {name: base + (1 if index < extra else 0) for index, name in enumerate(names)}


def server_weights(
    canary_percent: Any,
    stable: Sequence[str],
    canary: Sequence[str],
    scale: WeightScale | str,
) -> dict[str, int]:
    """Weights for every stable and canary server so the canary set receives ``canary_percent`` of traffic."""
    limits = get_scale(scale)
    percent = parse_percent(canary_percent, "canary_percent")
    stable_names = _check_names(stable, "stable")
    canary_names = _check_names(canary, "canary")
    both = sorted(set(stable_names) & set(canary_names))
    if both:
        raise TrafficSpecError("canary", f"server(s) {', '.join(both)} are in both the stable and the canary set")
    canary_share = Fraction(repr(percent)) / 100
    shares = {"stable": 1 - canary_share, "canary": canary_share}
    members = {"stable": stable_names, "canary": canary_names}
    for name in ("stable", "canary"):
        if shares[name] > 0 and not members[name]:
            raise TrafficSpecError(
                name, f"the {name} set is empty but should receive {float(shares[name] * 100):g}% of traffic"
            )
    # Largest total such that share * T / n <= max_weight for every set that receives traffic.
    total = min(int(limits.max_weight * len(members[name]) / shares[name]) for name in shares if shares[name] > 0)
    stable_total, canary_total = _largest_remainder(total, [total * shares["stable"], total * shares["canary"]])
    weights: dict[str, int] = {name: 0 for name in stable_names + canary_names}
    if stable_names:
        weights.update(_spread(stable_total, stable_names))
    if canary_names:
        weights.update(_spread(canary_total, canary_names))
    return weights


def group_weights(
    canary_percent: Any,
    scale: WeightScale | str,
    *,
    stable: str = "stable",
    canary: str = "canary",
) -> dict[str, int]:
    """Weights for two groups (ALB target groups, Kubernetes backendRefs): ``{stable: w, canary: w}``."""
    return server_weights(canary_percent, [stable], [canary], scale)


def observed_split(weights: Mapping[str, int], canary: Iterable[str]) -> float:
    """The canary percentage (0..100) that ``weights`` really give; servers not in ``canary`` are stable."""
    canary_names = list(canary)
    missing = sorted(name for name in canary_names if name not in weights)
    if missing:
        raise TrafficSpecError("canary", f"server(s) {', '.join(missing)} have no weight")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise TrafficSpecError(f"weights.{name}", f"expected an integer weight of 0 or more, got {weight!r}")
    total = sum(weights.values())
    if total == 0:
        raise TrafficSpecError("weights", "every weight is 0: no server would receive traffic")
    return 100.0 * sum(weights[name] for name in set(canary_names)) / total
