"""The task model: what producers send, what Redis stores, what the status API returns."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskforge.keys import validate_queue_name

#: Task type names: they become metric labels, so they are short and plain.
TASK_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


class TaskState(StrEnum):
    """Lifecycle states; see docs/lifecycle.md for the transitions."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for states a task never leaves (the DLQ's requeue starts a new life)."""
        return self in (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED)


class DeadReason(StrEnum):
    """Why a task was dead-lettered; every DLQ entry carries one."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"
    UNKNOWN_TASK_TYPE = "unknown_task_type"
    NON_RETRYABLE = "non_retryable"


class BackoffPolicy(BaseModel):
    """How long to wait before retry ``n``: fixed, or exponential with full jitter and a cap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fixed", "exponential"] = "exponential"
    base_s: Annotated[float, Field(ge=0, le=86_400 * 7)] = 1.0
    cap_s: Annotated[float, Field(ge=0, le=86_400 * 30)] = 300.0
    jitter: bool = True


class TaskSpec(BaseModel):
    """A task as a producer submits it.

    Options left as ``None`` fall back to the handler's declared defaults, then to the service
    settings (see :func:`taskforge.retry.resolve_policy`).
    """

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(pattern=TASK_TYPE_PATTERN, description="Handler name.")]
    payload: Any = Field(default_factory=dict, description="Any JSON value.")
    queue: str = Field(default="default", description="Queue name.")
    delay_s: Annotated[float | None, Field(ge=0, le=86_400 * 365)] = None
    eta: datetime | None = Field(default=None, description="Run at (timezone-aware) time.")
    max_retries: Annotated[int | None, Field(ge=0, le=1000)] = None
    backoff: BackoffPolicy | None = None
    timeout_s: Annotated[float | None, Field(gt=0, le=86_400)] = None
    idempotency_key: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    traceparent: Annotated[str | None, Field(max_length=256)] = None

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        return validate_queue_name(value)

    @field_validator("eta")
    @classmethod
    def _eta_aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("eta must include a timezone, e.g. 2030-01-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _one_of_delay_eta(self) -> TaskSpec:
        if self.delay_s is not None and self.eta is not None:
            raise ValueError("give either delay_s or eta, not both")
        return self

    def due_ms(self, now_ms: int) -> int:
        """Epoch milliseconds at which the task becomes runnable (``<= now_ms`` means now)."""
        if self.eta is not None:
            return int(self.eta.timestamp() * 1000)
        if self.delay_s:
            return now_ms + int(self.delay_s * 1000)
        return 0

    def payload_json(self) -> str:
        """The payload serialised as compact JSON, the form stored in Redis."""
        return json.dumps(self.payload, separators=(",", ":"))


class TaskEvent(BaseModel):
    """One entry of a task's event log."""

    at: datetime
    event: str
    worker: str | None = None
    error: str | None = None
    attempt: int | None = None
    delay_s: float | None = None


class TaskRecord(BaseModel):
    """A task as stored, returned by the status API."""

    id: str
    queue: str
    type: str
    state: TaskState
    payload: Any = None
    attempts: int = 0
    max_retries: int | None = None
    backoff: BackoffPolicy | None = None
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
    dead_reason: DeadReason | None = None
    cancel_requested: bool = False
    traceparent: str | None = None
    events: list[TaskEvent] = Field(default_factory=list)
