"""One exception hierarchy for TaskForge, and the one place script error codes map to it."""

from __future__ import annotations

from enum import IntEnum


class TaskForgeError(Exception):
    """Root of every error TaskForge raises on purpose.

    ``status`` and ``problem_type`` let the HTTP layer map any subclass to an RFC 9457 problem
    document in one exception handler.
    """

    status: int = 500
    problem_type: str = "internal-error"


class ConfigurationError(TaskForgeError):
    """Settings are missing, invalid or unsafe for the mode the service runs in."""

    status = 500
    problem_type = "configuration-error"


class RedisUnavailable(TaskForgeError):
    """Redis could not be reached or answered with a connection-level error."""

    status = 503
    problem_type = "redis-unavailable"


class InvalidTask(TaskForgeError):
    """A task or an argument failed validation; nothing was written."""

    status = 422
    problem_type = "invalid-task"


class TaskNotFound(TaskForgeError):
    """No task with this id exists (it never did, or its record expired)."""

    status = 404
    problem_type = "task-not-found"


class TaskNotCancellable(TaskForgeError):
    """The task already reached a terminal state."""

    status = 409
    problem_type = "task-not-cancellable"


class IdempotencyConflict(TaskForgeError):
    """An idempotency key was reused with a different request body."""

    status = 409
    problem_type = "idempotency-conflict"


class QueueLimitReached(TaskForgeError):
    """A new queue would pass the deployment's queue limit; existing queues still accept tasks.

    409: the request is valid, but conflicts with the current state (the number of live
    queues); it succeeds unchanged once queues are reaped or the limit is raised.
    """

    status = 409
    problem_type = "queue-limit"


class QueueNotAllowed(TaskForgeError):
    """The queue name is reserved or outside the deployment's allowed pattern."""

    status = 422
    problem_type = "queue-not-allowed"


class ScriptError(TaskForgeError):
    """A Lua script answered with an error code TaskForge does not expect: a bug."""

    status = 500
    problem_type = "script-error"


class ErrorCode(IntEnum):
    """Negative codes returned by the Lua scripts in ``taskforge/lua``."""

    TASK_NOT_FOUND = -1
    TASK_FINISHED = -2
    IDEMPOTENCY_CONFLICT = -3
    QUEUE_LIMIT = -4
    QUEUE_UNREGISTERED = -5


#: Codes that tell the caller to act (enqueue: register the queue, then retry), never errors.
SIGNAL_CODES = frozenset({ErrorCode.QUEUE_UNREGISTERED})


_CODE_TO_ERROR: dict[ErrorCode, tuple[type[TaskForgeError], str]] = {
    ErrorCode.TASK_NOT_FOUND: (TaskNotFound, "task {subject} not found"),
    ErrorCode.TASK_FINISHED: (TaskNotCancellable, "task {subject} already finished ({detail})"),
    ErrorCode.IDEMPOTENCY_CONFLICT: (
        IdempotencyConflict,
        "idempotency key {detail!r} was already used with a different body (task {subject})",
    ),
    ErrorCode.QUEUE_LIMIT: (
        QueueLimitReached,
        "cannot create queue(s) {subject}: {detail}; existing queues still accept tasks",
    ),
}


def error_from_code(code: int, *, script: str, subject: str, detail: str = "") -> TaskForgeError:
    """Build the exception for a script's negative return ``code``.

    Args:
        code: the negative number the script returned.
        script: the script's name, for the message.
        subject: the task id (or other subject) the call was about.
        detail: the script's second return element, if any.
    """
    try:
        cls, template = _CODE_TO_ERROR[ErrorCode(code)]
    except (ValueError, KeyError):
        return ScriptError(f"{script}: unexpected code {code} for {subject}")
    return cls(f"{template.format(subject=subject, detail=detail)} [{script}]")
