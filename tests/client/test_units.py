"""The client's pure pieces: Retry-After parsing, retry decisions, polling pace, percentiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from taskforge_client._calls import Poll, RetryPolicy, batch_limit, rechunk, retry_after_s
from taskforge_client.cli._common import exit_code
from taskforge_client.cli.bench import percentile
from taskforge_client.errors import (
    ConfigurationError,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    Unreachable,
    WaitTimeout,
    error_of,
)
from taskforge_client.models import Task, TaskState


def answer(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> httpx.Response:
    return httpx.Response(status, headers=headers, content=body,
                          request=httpx.Request("GET", "http://x/v1/queues"))  # fmt: skip


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s(answer(429, {"Retry-After": "3"})) == 3.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_s(answer(503, {"Retry-After": later})) or 0) <= 30
    assert retry_after_s(answer(503, {"Retry-After": "soon"})) is None
    assert retry_after_s(answer(503)) is None


def test_retry_policy_is_bounded_and_careful_with_what_may_have_run() -> None:
    policy = RetryPolicy(max_retries=2, max_wait_s=10)
    assert policy.after_response(answer(429, {"Retry-After": "2"}), 0, idempotent=False) == 2.0
    assert policy.after_response(answer(429, {"Retry-After": "2"}), 2, idempotent=False) is None
    assert policy.after_response(answer(429, {"Retry-After": "11"}), 0, idempotent=True) is None
    assert policy.after_response(answer(503, {"Retry-After": "1"}), 0, idempotent=True) == 1.0
    for status in (502, 503, 504):
        assert policy.after_response(answer(status), 0, idempotent=False) is None
    assert 0 <= (policy.after_response(answer(504), 0, idempotent=True) or -1) <= 0.5
    assert policy.after_response(answer(500), 0, idempotent=True) is None
    refused = httpx.ConnectError("refused")
    timed_out = httpx.ReadTimeout("slow")
    assert policy.after_error(refused, 0, idempotent=False) is not None
    assert policy.after_error(timed_out, 0, idempotent=False) is None
    assert policy.after_error(timed_out, 0, idempotent=True) is not None


def test_poll_grows_then_stops_at_the_deadline() -> None:
    poll = Poll(timeout_s=1.0, interval_s=0.1, max_interval_s=0.2, now=0.0)
    assert [poll.next_delay(0.0) for _ in range(3)] == [0.1, pytest.approx(0.15), 0.2]
    assert poll.next_delay(0.95) == pytest.approx(0.05)
    assert poll.next_delay(1.0) is None


def test_batch_limit_is_read_from_the_servers_422() -> None:
    assert batch_limit("a batch holds at most 250 tasks") == 250
    assert rechunk("a batch holds at most 250 tasks", 1000) == 250
    assert rechunk("a batch holds at most 250 tasks", 100) is None
    assert rechunk("payload too large", 1000) is None


def test_error_of_keeps_the_problem_or_makes_one() -> None:
    problem = b'{"type": "https://taskforge.dev/problems/task-not-found", "title": "Not found",' \
              b' "status": 404, "detail": "no such task", "request_id": "r1"}'  # fmt: skip
    error = error_of(answer(404, {"Content-Type": "application/problem+json"}, problem))
    assert isinstance(error, NotFound) and error.request_id == "r1"
    assert str(error) == "404 task-not-found: no such task"
    plain = error_of(answer(502, body=b"upstream down"))
    assert isinstance(plain, ServiceUnavailable) and plain.problem.detail == "upstream down"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigurationError("no key"), 2),
        (ValueError("bad"), 2),
        (error_of(answer(422)), 2),
        (error_of(answer(409)), 2),
        (error_of(answer(404)), 3),
        (error_of(answer(401)), 4),
        (PermissionDenied(error_of(answer(403)).problem), 4),
        (error_of(answer(429)), 5),
        (error_of(answer(500)), 5),
        (Unreachable("down"), 5),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code(error) == code


def test_wait_timeout_exit_code() -> None:
    task = Task(id="default.x", queue="default", type="echo", state=TaskState.QUEUED)
    assert exit_code(WaitTimeout("late", task)) == 6


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50,
        99,
        100,
    )
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None
