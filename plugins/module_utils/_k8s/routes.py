# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the Kubernetes provider: HTTPRoute backendRef weights and ingress-nginx canary annotations, read,
normalised and turned into a JSON merge patch. No I/O here.

- An HTTPRoute rule's ``backendRefs[].weight`` defaults to 1 (Gateway API); 0 means no traffic. A state is
  ``{route name: {service name: ServerState(weight, "ready")}}`` like the other providers'.
- A merge patch replaces a list whole, so the patch carries the rule list with only the weights changed (the
  ``resourceVersion`` guard added by the client makes that safe against concurrent edits).
- ingress-nginx: the canary Ingress carries ``nginx.ingress.kubernetes.io/canary: "true"`` and
  ``canary-weight`` (0..100), optionally ``canary-by-header``, ``canary-by-header-value``, ``canary-by-cookie``.
- The rollout journal is the annotation ``JOURNAL_ANNOTATION`` on the route (or canary Ingress), as compact JSON.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ansible_collections.strata.deploy.plugins.module_utils._traffic.errors import (
    TrafficSpecError,
    UnknownTargetError,
)
from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import READY, ServerState
from ansible_collections.strata.deploy.plugins.module_utils._traffic.weights import KUBERNETES

if TYPE_CHECKING:
    from ansible_collections.strata.deploy.plugins.module_utils._traffic.state import State

JOURNAL_ANNOTATION = "strata.deploy/rollout-journal"
NGINX_PREFIX = "nginx.ingress.kubernetes.io/"
NGINX_KEYS = {
    "canary": "canary",
    "weight": "canary-weight",
    "header": "canary-by-header",
    "header_value": "canary-by-header-value",
    "cookie": "canary-by-cookie",
}
NGINX_MAX_WEIGHT = 100


def _service_ref(ref: Mapping[str, Any]) -> bool:
    return ref.get("kind", "Service") == "Service" and ref.get("group", "") in ("", "core")


def rule_refs(route: Mapping[str, Any], rule: int) -> list[dict[str, Any]]:
    rules = (route.get("spec") or {}).get("rules") or []
    if not 0 <= rule < len(rules):
        name = (route.get("metadata") or {}).get("name")
        raise TrafficSpecError("rule", f"HTTPRoute {name} has {len(rules)} rule(s); rule {rule} does not exist")
    return list(rules[rule].get("backendRefs") or [])


def route_weights(route: Mapping[str, Any], rule: int) -> dict[str, int]:
    """``service -> weight`` of the Service backendRefs of rule ``rule`` (a missing weight is 1)."""
    return {ref["name"]: int(ref.get("weight", 1)) for ref in rule_refs(route, rule) if _service_ref(ref)}


def route_state(route: Mapping[str, Any], rule: int) -> State:
    name = (route.get("metadata") or {}).get("name", "")
    return {name: {svc: ServerState(w, READY) for svc, w in route_weights(route, rule).items()}}


def check_backends(route: Mapping[str, Any], rule: int, backends: Mapping[str, Any]) -> dict[str, int]:
    """The desired weights, checked: every name a Service backendRef of the rule, weights 0..1000000, not all 0."""
    current = route_weights(route, rule)
    name = (route.get("metadata") or {}).get("name")
    wanted: dict[str, int] = {}
    for svc, given in backends.items():
        if svc not in current:
            known = ", ".join(current) or "none"
            raise UnknownTargetError(
                f"backends.{svc}", f"HTTPRoute {name} rule {rule} has no backendRef {svc} (it has: {known})"
            )
        weight = int(given.strip()) if isinstance(given, str) and given.strip().isdigit() else given
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= KUBERNETES.max_weight:
            raise TrafficSpecError(
                f"backends.{svc}", f"expected an integer weight between 0 and {KUBERNETES.max_weight}, got {weight!r}"
            )
        wanted[svc] = weight
    if not any(dict(current, **wanted).values()):
        raise TrafficSpecError("backends", f"every backendRef of HTTPRoute {name} rule {rule} would get weight 0")
    return wanted


def route_patch(
    route: Mapping[str, Any], rule: int, weights: Mapping[str, int], journal: str | None = None
) -> dict[str, Any] | None:
    """The merge patch that sets ``weights`` (and the journal annotation), or ``None`` when nothing differs."""
    patch: dict[str, Any] = {}
    current = route_weights(route, rule)
    if any(current[svc] != weight for svc, weight in weights.items()):
        rules = copy.deepcopy((route.get("spec") or {}).get("rules") or [])
        for ref in rules[rule].get("backendRefs") or []:
            if _service_ref(ref) and ref["name"] in weights:
                ref["weight"] = weights[ref["name"]]
        patch["spec"] = {"rules": rules}
    journal_patch(route, journal, patch)
    return patch or None


def journal_patch(obj: Mapping[str, Any], journal: str | None, patch: dict[str, Any]) -> None:
    if journal is None:
        return
    text = json.dumps(json.loads(journal), separators=(",", ":"), sort_keys=True)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if annotations.get(JOURNAL_ANNOTATION) != text:
        patch.setdefault("metadata", {}).setdefault("annotations", {})[JOURNAL_ANNOTATION] = text


def read_journal(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(JOURNAL_ANNOTATION)


# -- ingress-nginx canary annotations ----------------------------------------------------------------


def nginx_canary(ingress: Mapping[str, Any]) -> dict[str, Any]:
    """The canary settings of an Ingress, normalised (``weight`` 0 when unset; absent strings are ``None``)."""
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    raw = {key: annotations.get(NGINX_PREFIX + suffix) for key, suffix in NGINX_KEYS.items()}
    weight = raw["weight"]
    return {
        "canary": str(raw["canary"]).lower() == "true",
        "weight": int(weight) if weight is not None and str(weight).isdigit() else 0,
        "header": raw["header"],
        "header_value": raw["header_value"],
        "cookie": raw["cookie"],
    }


def nginx_patch(
    ingress: Mapping[str, Any], desired: Mapping[str, Any], journal: str | None = None
) -> dict[str, Any] | None:
    """The annotations patch for ``desired`` (keys of ``NGINX_KEYS``; ``None`` values are left as they are)."""
    weight = desired.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100):
        raise TrafficSpecError("canary_weight", f"expected an integer between 0 and {NGINX_MAX_WEIGHT}, got {weight!r}")
    current = nginx_canary(ingress)
    annotations: dict[str, Any] = {}
    wanted = dict(desired, canary=True)
    for key, value in wanted.items():
        if value is None or current.get(key) == value:
            continue
        annotations[NGINX_PREFIX + NGINX_KEYS[key]] = "true" if value is True else str(value)
    patch: dict[str, Any] = {"metadata": {"annotations": annotations}} if annotations else {}
    journal_patch(ingress, journal, patch)
    return patch or None
