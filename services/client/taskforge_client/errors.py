"""One exception hierarchy: every error the client raises is a :class:`TaskForgeError`.

An HTTP error carries the server's problem document (``.problem``); the class says what
happened, so callers catch ``NotFound`` or ``RateLimited`` rather than testing status codes::

    TaskForgeError
    ├── ConfigurationError        no URL or API key
    ├── Unreachable               no HTTP answer (connection refused, timeout, TLS)
    ├── WaitTimeout               wait() ran out of time; .task is the last state seen
    └── ApiError                  an HTTP error answer; .status, .problem, .retry_after
        ├── BadRequest            400, 413, 415 and the two below
        │   ├── InvalidRequest    422, with .problem.errors naming the fields
        │   └── Conflict          409 (idempotency key reused with another body, queue-limit)
        ├── AuthenticationError   401: no key, an unknown or a revoked one
        ├── PermissionDenied      403: the key lacks the scope
        ├── NotFound              404: no such task, queue or key
        ├── RateLimited           429, after the retries allowed
        └── ServerError           500 (a bug), and ServiceUnavailable: 502, 503, 504
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
from pydantic import ValidationError

from taskforge_client.models import Problem

if TYPE_CHECKING:
    from taskforge_client.models import Task


class TaskForgeError(Exception):
    """Base of every error the client raises."""


class ConfigurationError(TaskForgeError):
    """The client cannot be set up: no URL or no API key."""


class Unreachable(TaskForgeError):
    """The gateway gave no HTTP answer, even after the retries allowed."""


class WaitTimeout(TaskForgeError):
    """The task did not reach a terminal state in time."""

    def __init__(self, message: str, task: Task) -> None:
        super().__init__(message)
        self.task = task


class ApiError(TaskForgeError):
    """An HTTP error answer, with its problem document."""

    def __init__(self, problem: Problem, retry_after: float | None = None) -> None:
        super().__init__(_message(problem))
        self.problem = problem
        self.status = problem.status
        self.retry_after = retry_after

    @property
    def request_id(self) -> str | None:
        """The gateway's request id, to quote when reporting a problem."""
        return self.problem.request_id


class BadRequest(ApiError):
    """The request was refused as sent (400, 413, 415; 409 and 422 below)."""


class InvalidRequest(BadRequest):
    """422: the body or a parameter is invalid; ``problem.errors`` lists the fields."""


class Conflict(BadRequest):
    """409: an idempotency key reused with another body, or a queue past the limit."""


class AuthenticationError(ApiError):
    """401: no API key, or an unknown or revoked one."""


class PermissionDenied(ApiError):
    """403: the key lacks the scope the route needs."""


class NotFound(ApiError):
    """404: no such task, queue or key."""


class RateLimited(ApiError):
    """429: the key's rate limit, still exceeded after the retries allowed."""


class ServerError(ApiError):
    """5xx: 500 is a server bug."""


class ServiceUnavailable(ServerError):
    """502, 503, 504: the api or Redis is unreachable or slow; retrying later may work."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    429: RateLimited,
    502: ServiceUnavailable,
    503: ServiceUnavailable,
    504: ServiceUnavailable,
}


def _message(problem: Problem) -> str:
    text = problem.detail or problem.title or "error"
    if problem.errors:
        fields = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in problem.errors)
        text = f"{text} ({fields})"
    return f"{problem.status} {problem.slug}: {text}"


def problem_of(response: httpx.Response) -> Problem:
    """The response's problem document, or one made up from its status if it has none."""
    try:
        return Problem.model_validate(response.json())
    except (ValueError, ValidationError, json.JSONDecodeError):
        reason = response.reason_phrase or "error"
        return Problem(
            status=response.status_code, title=reason, detail=response.text[:200] or None
        )


def error_of(response: httpx.Response, retry_after: float | None = None) -> ApiError:
    """The exception for an error response."""
    status = response.status_code
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    return kind(problem_of(response), retry_after)
