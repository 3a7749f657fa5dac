"""Retry policy: resolved in one function, with backoff as a pure function."""

from __future__ import annotations

import math
from dataclasses import dataclass

from taskforge.models import BackoffPolicy, DeadReason

#: Longest retry delay a handler may ask for (the longest backoff cap allowed): due times stay
#: integers and datetimes well inside their range.
MAX_RETRY_DELAY_S = 30 * 86_400.0


class Retry(Exception):
    """Raised by a handler to ask for a retry, optionally after ``delay_s`` seconds.

    The attempt still counts against the task's retry budget.
    """

    def __init__(self, reason: str = "retry requested", *, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class GiveUp(Exception):
    """Raised by a handler when retrying cannot help: the task goes to the DLQ at once."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry rules in force for one attempt."""

    max_retries: int
    backoff: BackoffPolicy
    #: When set, only these exception types are retried; others dead-letter at once.
    retry_on: tuple[type[BaseException], ...] = ()
    #: These exception types dead-letter at once, even if ``retry_on`` matches.
    give_up_on: tuple[type[BaseException], ...] = ()


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Retry after ``delay_s``, or dead-letter with ``reason`` (``delay_s`` is then None)."""

    delay_s: float | None
    reason: DeadReason | None


def compute_backoff(attempt: int, base_s: float, cap_s: float, jitter: float | None) -> float:
    """Delay before the retry that follows failed attempt number ``attempt`` (1-based).

    Exponential: ``min(cap_s, base_s * 2 ** (attempt - 1))``. With full jitter the delay is
    that bound times ``jitter``, a number in ``[0, 1)`` the caller draws; ``None`` means no
    jitter. Pure: no clock, no randomness of its own.
    """
    exponent = max(0, attempt - 1)
    # Past 2**64 the cap has long won; stopping the exponent there avoids float overflow.
    bound = min(cap_s, base_s * float(2 ** min(exponent, 64)))
    return bound if jitter is None else bound * jitter


def backoff_delay_s(policy: BackoffPolicy, attempt: int, draw: float) -> float:
    """Delay for ``policy`` after failed attempt ``attempt``, given a uniform draw in [0, 1)."""
    if policy.kind == "fixed":
        return compute_backoff(1, policy.base_s, policy.cap_s, draw if policy.jitter else None)
    return compute_backoff(attempt, policy.base_s, policy.cap_s, draw if policy.jitter else None)


def resolve_max_retries(
    task_max_retries: int | None, handler_max_retries: int | None, default_max_retries: int
) -> int:
    """Retry budget: the enqueue option, else the handler's, else the service's."""
    if task_max_retries is not None:
        return task_max_retries
    return default_max_retries if handler_max_retries is None else handler_max_retries


def resolve_policy(
    *,
    task_max_retries: int | None,
    task_backoff: BackoffPolicy | None,
    handler_max_retries: int | None,
    handler_backoff: BackoffPolicy | None,
    default_max_retries: int,
    default_backoff: BackoffPolicy,
    retry_on: tuple[type[BaseException], ...] = (),
    give_up_on: tuple[type[BaseException], ...] = (),
) -> RetryPolicy:
    """The policy for one task: enqueue options, then the handler's, then the service's."""
    max_retries = resolve_max_retries(task_max_retries, handler_max_retries, default_max_retries)
    backoff = task_backoff or handler_backoff or default_backoff
    return RetryPolicy(max_retries, backoff, retry_on, give_up_on)


def decide(
    policy: RetryPolicy, attempt: int, error: BaseException, draw: float, *, timed_out: bool
) -> RetryDecision:
    """Retry or dead-letter after attempt ``attempt`` failed with ``error``.

    Args:
        policy: the resolved policy.
        attempt: the 1-based number of the attempt that failed.
        error: what the handler raised.
        draw: a uniform number in [0, 1) for jitter.
        timed_out: the attempt hit its timeout.
    """
    if isinstance(error, (GiveUp, *policy.give_up_on)):
        return RetryDecision(None, DeadReason.NON_RETRYABLE)
    explicit = isinstance(error, Retry)
    if (
        policy.retry_on
        and not explicit
        and not timed_out
        and not isinstance(error, policy.retry_on)
    ):
        return RetryDecision(None, DeadReason.NON_RETRYABLE)
    if attempt > policy.max_retries:
        return RetryDecision(
            None, DeadReason.TIMED_OUT if timed_out else DeadReason.RETRIES_EXHAUSTED
        )
    if isinstance(error, Retry) and error.delay_s is not None and math.isfinite(error.delay_s):
        return RetryDecision(min(max(0.0, error.delay_s), MAX_RETRY_DELAY_S), None)
    return RetryDecision(backoff_delay_s(policy.backoff, attempt, draw), None)
