# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed errors of the traffic core; every message names the parameter and what was expected."""

from __future__ import annotations

from collections.abc import Sequence


class TrafficError(Exception):
    """Base class of every error raised by ``_traffic``."""


class TrafficSpecError(TrafficError, ValueError):
    """A user-supplied parameter is invalid.

    ``param`` is the parameter path as the user wrote it (``steps[2].weight``) and ``message`` says what was
    expected and what was found.
    """

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(f"{param}: {message}")


class UnknownTargetError(TrafficSpecError):
    """A backend or server named in the desired state does not exist on the load balancer."""


class JournalError(TrafficError):
    """A rollout journal is corrupt, of an unsupported schema, or asked for an impossible transition."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"rollout journal {where}: {message}")


class TrafficConflictError(TrafficError):
    """A server no longer shows the state the changes were computed from (someone else changed it)."""


class TrafficVerifyError(TrafficError):
    """The provider accepted the change but the state read back differs from the desired state."""

    def __init__(self, mismatches: Sequence[object]) -> None:  # state.Mismatch values
        self.mismatches = list(mismatches)
        super().__init__("read-back differs from the desired state: " + "; ".join(str(m) for m in mismatches))
