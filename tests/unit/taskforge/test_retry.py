"""Tests for taskforge.retry: the pure backoff, the policy resolver and the retry decision."""

from __future__ import annotations

import math

import pytest

from taskforge.models import BackoffPolicy, DeadReason
from taskforge.retry import (
    GiveUp,
    Retry,
    RetryDecision,
    RetryPolicy,
    backoff_delay_s,
    compute_backoff,
    decide,
    resolve_policy,
)

# -- compute_backoff -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "base_s", "cap_s", "expected"),
    [
        (1, 1.0, 300.0, 1.0),
        (2, 1.0, 300.0, 2.0),
        (3, 1.0, 300.0, 4.0),
        (9, 1.0, 300.0, 256.0),
        (10, 1.0, 300.0, 300.0),  # 512 capped
        (4, 0.5, 300.0, 4.0),
        (1, 10.0, 5.0, 5.0),  # the cap wins even over the base
        (0, 2.0, 300.0, 2.0),  # attempt numbers below 1 behave as 1
        (-5, 2.0, 300.0, 2.0),
        (3, 0.0, 300.0, 0.0),
        (3, 2.0, 0.0, 0.0),
        (65, 1.0, 1e30, 2.0**64),  # exponent clamp: 2**64 is the largest factor
    ],
)
def test_compute_backoff_without_jitter_is_exact(
    attempt: int, base_s: float, cap_s: float, expected: float
) -> None:
    assert compute_backoff(attempt, base_s, cap_s, None) == expected


@pytest.mark.parametrize("attempt", [64, 65, 100, 1_000, 10**6, 10**18])
@pytest.mark.parametrize(("base_s", "cap_s"), [(1.0, 300.0), (604_800.0, 2_592_000.0), (1e-3, 1.0)])
def test_compute_backoff_huge_attempts_equal_cap(attempt: int, base_s: float, cap_s: float) -> None:
    delay = compute_backoff(attempt, base_s, cap_s, None)
    assert delay == cap_s
    assert math.isfinite(delay)


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 0.999999])
@pytest.mark.parametrize(("attempt", "bound"), [(1, 1.0), (3, 4.0), (20, 60.0)])
def test_compute_backoff_jitter_scales_the_bound(attempt: int, bound: float, jitter: float) -> None:
    delay = compute_backoff(attempt, 1.0, 60.0, jitter)
    assert delay == pytest.approx(bound * jitter)
    assert 0.0 <= delay < bound


def test_compute_backoff_full_jitter_never_reaches_the_bound() -> None:
    draws = [i / 1000 for i in range(1000)]
    delays = [compute_backoff(5, 1.0, 10.0, d) for d in draws]
    assert min(delays) == 0.0
    assert max(delays) < 10.0


# -- backoff_delay_s ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "attempt", "draw", "expected"),
    [
        (BackoffPolicy(kind="fixed", base_s=5, cap_s=300, jitter=False), 1, 0.5, 5.0),
        (BackoffPolicy(kind="fixed", base_s=5, cap_s=300, jitter=False), 10, 0.5, 5.0),
        (BackoffPolicy(kind="fixed", base_s=5, cap_s=300, jitter=True), 10, 0.5, 2.5),
        (BackoffPolicy(kind="fixed", base_s=50, cap_s=30, jitter=False), 3, 0.5, 30.0),
        (BackoffPolicy(kind="exponential", base_s=1, cap_s=300, jitter=False), 1, 0.5, 1.0),
        (BackoffPolicy(kind="exponential", base_s=1, cap_s=300, jitter=False), 4, 0.5, 8.0),
        (BackoffPolicy(kind="exponential", base_s=1, cap_s=300, jitter=True), 4, 0.5, 4.0),
        (BackoffPolicy(kind="exponential", base_s=1, cap_s=300, jitter=False), 50, 0.5, 300.0),
        (BackoffPolicy(kind="exponential", base_s=1, cap_s=300, jitter=True), 50, 0.0, 0.0),
    ],
)
def test_backoff_delay_s(policy: BackoffPolicy, attempt: int, draw: float, expected: float) -> None:
    assert backoff_delay_s(policy, attempt, draw) == pytest.approx(expected)


# -- resolve_policy -----------------------------------------------------------------------

TASK_B = BackoffPolicy(kind="fixed", base_s=11)
HANDLER_B = BackoffPolicy(kind="fixed", base_s=22)
DEFAULT_B = BackoffPolicy(kind="exponential", base_s=33)


@pytest.mark.parametrize(
    ("task_max", "handler_max", "default_max", "expected_max"),
    [
        (1, 5, 3, 1),
        (0, 5, 3, 0),  # an explicit 0 on the task is not "unset"
        (None, 5, 3, 5),
        (None, 0, 3, 0),  # nor on the handler
        (None, None, 3, 3),
        (None, None, 0, 0),
        (7, None, 3, 7),
    ],
)
def test_resolve_policy_max_retries_precedence(
    task_max: int | None, handler_max: int | None, default_max: int, expected_max: int
) -> None:
    policy = resolve_policy(
        task_max_retries=task_max,
        task_backoff=None,
        handler_max_retries=handler_max,
        handler_backoff=None,
        default_max_retries=default_max,
        default_backoff=DEFAULT_B,
    )
    assert policy.max_retries == expected_max


@pytest.mark.parametrize(
    ("task_b", "handler_b", "expected"),
    [
        (TASK_B, HANDLER_B, TASK_B),
        (TASK_B, None, TASK_B),
        (None, HANDLER_B, HANDLER_B),
        (None, None, DEFAULT_B),
    ],
)
def test_resolve_policy_backoff_precedence(
    task_b: BackoffPolicy | None, handler_b: BackoffPolicy | None, expected: BackoffPolicy
) -> None:
    policy = resolve_policy(
        task_max_retries=None,
        task_backoff=task_b,
        handler_max_retries=None,
        handler_backoff=handler_b,
        default_max_retries=3,
        default_backoff=DEFAULT_B,
    )
    assert policy.backoff is expected


def test_resolve_policy_keeps_exception_filters() -> None:
    policy = resolve_policy(
        task_max_retries=None,
        task_backoff=None,
        handler_max_retries=None,
        handler_backoff=None,
        default_max_retries=3,
        default_backoff=DEFAULT_B,
        retry_on=(ConnectionError,),
        give_up_on=(KeyError,),
    )
    assert policy == RetryPolicy(3, DEFAULT_B, (ConnectionError,), (KeyError,))


# -- decide -------------------------------------------------------------------------------

NO_JITTER = BackoffPolicy(kind="exponential", base_s=1, cap_s=300, jitter=False)


def policy(
    max_retries: int = 3,
    retry_on: tuple[type[BaseException], ...] = (),
    give_up_on: tuple[type[BaseException], ...] = (),
) -> RetryPolicy:
    return RetryPolicy(max_retries, NO_JITTER, retry_on, give_up_on)


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


@pytest.mark.parametrize(
    ("pol", "attempt", "error", "timed_out", "expected"),
    [
        # GiveUp dead-letters at once, even on the first attempt and with retry_on matching.
        (policy(), 1, GiveUp("no"), False, RetryDecision(None, DeadReason.NON_RETRYABLE)),
        (
            policy(retry_on=(GiveUp,)),
            1,
            GiveUp("no"),
            False,
            RetryDecision(None, DeadReason.NON_RETRYABLE),
        ),
        # give_up_on wins over retry_on.
        (
            policy(retry_on=(Transient,), give_up_on=(Transient,)),
            1,
            Transient(),
            False,
            RetryDecision(None, DeadReason.NON_RETRYABLE),
        ),
        (
            policy(give_up_on=(LookupError,)),
            1,
            KeyError("k"),  # a subclass counts
            False,
            RetryDecision(None, DeadReason.NON_RETRYABLE),
        ),
        # retry_on: matching errors retry, others do not.
        (policy(retry_on=(Transient,)), 1, Transient(), False, RetryDecision(1.0, None)),
        (
            policy(retry_on=(Transient,)),
            1,
            Permanent(),
            False,
            RetryDecision(None, DeadReason.NON_RETRYABLE),
        ),
        # An explicit Retry and a timeout are retried even when retry_on does not list them.
        (policy(retry_on=(Transient,)), 1, Retry(), False, RetryDecision(1.0, None)),
        (
            policy(retry_on=(Transient,)),
            1,
            TimeoutError("t"),
            True,
            RetryDecision(1.0, None),
        ),
        # Explicit delays.
        (policy(), 1, Retry(delay_s=7), False, RetryDecision(7, None)),
        (policy(), 2, Retry(delay_s=0), False, RetryDecision(0, None)),
        (policy(), 2, Retry(), False, RetryDecision(2.0, None)),
        # Backoff grows with the attempt.
        (policy(), 1, ValueError(), False, RetryDecision(1.0, None)),
        (policy(), 2, ValueError(), False, RetryDecision(2.0, None)),
        (policy(), 3, ValueError(), False, RetryDecision(4.0, None)),
        # Attempt numbering: attempt == max_retries still retries, max_retries + 1 dies.
        (policy(3), 4, ValueError(), False, RetryDecision(None, DeadReason.RETRIES_EXHAUSTED)),
        (policy(3), 9, ValueError(), False, RetryDecision(None, DeadReason.RETRIES_EXHAUSTED)),
        (policy(0), 1, ValueError(), False, RetryDecision(None, DeadReason.RETRIES_EXHAUSTED)),
        (policy(3), 4, Retry(delay_s=7), False, RetryDecision(None, DeadReason.RETRIES_EXHAUSTED)),
        # Timeouts.
        (policy(3), 3, TimeoutError(), True, RetryDecision(4.0, None)),
        (policy(3), 4, TimeoutError(), True, RetryDecision(None, DeadReason.TIMED_OUT)),
        (policy(0), 1, TimeoutError(), True, RetryDecision(None, DeadReason.TIMED_OUT)),
        # A TimeoutError the handler raised itself is an ordinary error.
        (policy(3), 4, TimeoutError(), False, RetryDecision(None, DeadReason.RETRIES_EXHAUSTED)),
    ],
)
def test_decide(
    pol: RetryPolicy,
    attempt: int,
    error: BaseException,
    timed_out: bool,
    expected: RetryDecision,
) -> None:
    assert decide(pol, attempt, error, 0.5, timed_out=timed_out) == expected


@pytest.mark.parametrize("max_retries", [0, 1, 3, 10])
def test_decide_retries_exactly_max_retries_times(max_retries: int) -> None:
    pol = policy(max_retries)
    outcomes = [decide(pol, n, ValueError(), 0.5, timed_out=False) for n in range(1, 20)]
    retries = [d for d in outcomes if d.reason is None]
    assert len(retries) == max_retries
    assert outcomes[max_retries].reason is DeadReason.RETRIES_EXHAUSTED


def test_decide_uses_the_draw_for_jitter() -> None:
    jittered = RetryPolicy(3, BackoffPolicy(base_s=8, cap_s=300, jitter=True))
    assert decide(jittered, 2, ValueError(), 0.25, timed_out=False) == RetryDecision(4.0, None)
    assert decide(jittered, 2, ValueError(), 0.0, timed_out=False) == RetryDecision(0.0, None)


def test_retry_exception_carries_reason_and_delay() -> None:
    exc = Retry("rate limited", delay_s=3)
    assert str(exc) == "rate limited"
    assert exc.delay_s == 3
    assert Retry().delay_s is None


def test_explicit_retry_delay_is_capped() -> None:
    from taskforge.retry import MAX_RETRY_DELAY_S

    policy = RetryPolicy(3, BackoffPolicy())
    decision = decide(policy, 1, Retry("later", delay_s=1e12), 0.5, timed_out=False)
    assert decision.delay_s == MAX_RETRY_DELAY_S
