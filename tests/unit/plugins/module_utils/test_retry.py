"""``_retry.retry_call``: transient errors retried with bounded, jittered backoff; others raised at once."""

from __future__ import annotations

import pytest
from ansible_collections.strata.deploy.plugins.module_utils._retry import backoff_delay, retry_call


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def flaky(failures: list[Exception]):
    calls = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    return call, calls


def test_transient_errors_are_retried_with_jittered_growing_delays() -> None:
    call, calls = flaky([Transient(), Transient()])
    slept: list[float] = []

    result = retry_call(
        call,
        catch=(Transient, Fatal),
        is_transient=lambda e: isinstance(e, Transient),
        sleep=slept.append,
        rand=lambda: 0.5,
        base_delay=0.2,
    )

    assert result == "ok" and len(calls) == 3
    assert slept == [0.1, 0.2]  # half (the jitter) of 0.2 * 2**attempt


def test_other_errors_are_not_retried() -> None:
    call, calls = flaky([Fatal()])
    with pytest.raises(Fatal):
        retry_call(
            call, catch=(Transient, Fatal), is_transient=lambda e: isinstance(e, Transient), sleep=lambda s: None
        )
    assert len(calls) == 1


def test_attempts_bound_the_retries() -> None:
    call, calls = flaky([Transient()] * 10)
    with pytest.raises(Transient):
        retry_call(call, catch=(Transient,), is_transient=lambda e: True, attempts=3, sleep=lambda s: None)
    assert len(calls) == 3


def test_deadline_bounds_the_retries() -> None:
    call, calls = flaky([Transient()] * 10)
    with pytest.raises(Transient):
        retry_call(
            call, catch=(Transient,), is_transient=lambda e: True, deadline=0.0, rand=lambda: 1.0, sleep=lambda s: None
        )
    assert len(calls) == 1


def test_delay_is_capped() -> None:
    assert backoff_delay(20, 0.2, 5.0, lambda: 1.0) == 5.0
