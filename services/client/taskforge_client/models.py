"""The JSON bodies of TaskForge's HTTP API, as typed models.

They mirror the server's schemas field for field (``taskforge_api.schemas``,
``taskforge.models.TaskRecord``, the gateway's key routes). Unknown fields are ignored, so a
newer server that adds one does not break an older client.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TaskState(StrEnum):
    """A task's lifecycle state."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """A task never leaves these (``failed`` is not one: a retry is scheduled)."""
        return self in (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED)


Scope = Literal["tasks:write", "tasks:read", "admin"]


class Backoff(_Body):
    """Delay before each retry: fixed, or exponential with full jitter and a cap."""

    kind: Literal["fixed", "exponential"] = "exponential"
    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: bool = True


class NewTask(BaseModel):
    """A task to enqueue; options left as None fall back to handler and server defaults."""

    model_config = ConfigDict(extra="forbid")

    type: str
    payload: Any = Field(default_factory=dict)
    queue: str = "default"
    delay_s: float | None = None
    eta: datetime | None = None
    max_retries: int | None = None
    backoff: Backoff | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None

    def body(self) -> dict[str, Any]:
        """The request body (unset options left out, so the server's defaults apply)."""
        return self.model_dump(mode="json", exclude_none=True)


class TaskEvent(_Body):
    """One entry of a task's event log."""

    at: datetime
    event: str
    worker: str | None = None
    error: str | None = None
    attempt: int | None = None
    delay_s: float | None = None


class Task(_Body):
    """A task as ``GET /v1/tasks/{id}`` returns it."""

    id: str
    queue: str
    type: str
    state: TaskState
    payload: Any = None
    attempts: int = 0
    max_retries: int | None = None
    backoff: Backoff | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None
    created_at: datetime | None = None
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    last_error: str | None = None
    traceback: str | None = None
    result: Any = None
    dead_reason: str | None = None
    cancel_requested: bool = False
    traceparent: str | None = None
    events: list[TaskEvent] = Field(default_factory=list)
    unreadable: dict[str, str] | None = None


class TaskCreated(_Body):
    """An enqueued task's id; ``created`` is False when an idempotency key replayed it."""

    id: str
    state: TaskState
    created: bool


class BatchCreated(_Body):
    """Ids in the order the tasks were given."""

    tasks: list[TaskCreated]


class CancelResult(_Body):
    """``cancelled``: it will not run; ``cancel_requested``: it runs and is being stopped."""

    id: str
    status: Literal["cancelled", "cancel_requested"]


class QueueStats(_Body):
    """Depths per state, lifetime counters and the age of the oldest waiting task."""

    queue: str
    queued: int
    scheduled: int
    running: int
    dead: int
    oldest_queued_age_s: float
    counters: dict[str, int]


class QueuePage(_Body):
    """A page of queues in name order."""

    queues: list[QueueStats]
    total: int
    next_cursor: str | None


class DeadLetterPage(_Body):
    """A page of dead tasks; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[Task]
    total: int
    next_cursor: str | None


class CountResult(_Body):
    """How many tasks an operation affected."""

    count: int


class KeyInfo(_Body):
    """A stored API key, without its secret. None limits mean the gateway's defaults."""

    id: str
    name: str
    scopes: list[Scope]
    rate_per_s: float | None
    burst: int | None
    created_at: datetime
    revoked: bool
    last_used_at: datetime | None


class KeyCreated(_Body):
    """A new key: ``key`` is shown this once."""

    id: str
    key: str
    name: str
    scopes: list[Scope]
    rate_per_s: float | None
    burst: int | None
    created_at: datetime


class KeyList(_Body):
    """Every key, oldest first."""

    items: list[KeyInfo]


class FieldError(_Body):
    """One invalid field of a 422."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(_Body):
    """An RFC 9457 problem document, as every TaskForge error is answered."""

    type: str = "about:blank"
    title: str = ""
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None

    @property
    def slug(self) -> str:
        """The problem type's last segment, e.g. ``task-not-found``."""
        return self.type.rstrip("/").rsplit("/", 1)[-1]
