# Copyright: (c) 2025, strata.deploy maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded retries with full-jitter exponential backoff, for transient failures only.

``retry_call(call, catch=(...), is_transient=...)`` runs ``call()``; when it raises one of the exception types
``catch`` and ``is_transient`` accepts it,
it sleeps ``uniform(0, min(max_delay, base_delay * 2**attempt))`` and tries again, at most ``attempts`` times in
all and never past ``deadline`` seconds (both bounds hold). Any other exception, or the last transient one, is
raised as it is. ``sleep`` and ``rand`` can be given so a caller (or a test) controls time.

Used by the ALB client (``_alb/client.py``: throttling and 5xx codes of the AWS API). The HAProxy client
(``_haproxy/client.py``, refused connections during a reload) and the Prometheus client (``_prometheus/client.py``)
have retry loops of their own that could use this helper; they are left as they are.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

DEFAULT_ATTEMPTS = 5
DEFAULT_BASE_DELAY = 0.2
DEFAULT_MAX_DELAY = 5.0
DEFAULT_DEADLINE = 60.0


def backoff_delay(attempt: int, base_delay: float, max_delay: float, rand: Callable[[], float]) -> float:
    """Full jitter: a random delay between 0 and ``min(max_delay, base_delay * 2**attempt)``."""
    return rand() * min(max_delay, base_delay * (2**attempt))


def retry_call(
    call: Callable[[], T],
    *,
    catch: tuple[type[BaseException], ...],
    is_transient: Callable[[BaseException], bool],
    attempts: int = DEFAULT_ATTEMPTS,
    base_delay: float = DEFAULT_BASE_DELAY,
    max_delay: float = DEFAULT_MAX_DELAY,
    deadline: float = DEFAULT_DEADLINE,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """``call()``, retried on transient exceptions (see the module docstring); ``on_retry(attempt, exc, delay)``
    is told before each sleep."""
    if attempts < 1:
        raise ValueError(f"attempts: expected 1 or more, got {attempts!r}")
    end = time.monotonic() + deadline
    attempt = 0
    while True:
        try:
            return call()
        except catch as exc:
            attempt += 1
            if not is_transient(exc) or attempt >= attempts:
                raise
            delay = backoff_delay(attempt - 1, base_delay, max_delay, rand)
            if time.monotonic() + delay > end:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            sleep(delay)
