"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from taskforge.models import (
    MAX_DELAY_S,
    MAX_IDEMPOTENCY_KEY_CHARS,
    BackoffPolicy,
    DeadReason,
    TaskRecord,
    TaskSpec,
    TaskState,
    check_eta,
)

#: Request bodies are validated strictly: ``true`` is not 1 and ``"5"`` is not 5.
STRICT_BODY = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

_DATE_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

_TASK_EXAMPLE: dict[str, Any] = {
    "type": "http",
    "queue": "webhooks",
    "payload": {"url": "https://example.com/hook", "body": {"order": 42}},
    "max_retries": 5,
}


class TaskCreate(BaseModel):
    """A task to enqueue. Options left out fall back to handler and service defaults."""

    model_config = ConfigDict(**STRICT_BODY, json_schema_extra={"examples": [_TASK_EXAMPLE]})

    type: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9_.:-]{1,100}$",
            validation_alias=AliasChoices("type", "task_type"),
            description="Handler name (``task_type`` is accepted as an alias).",
        ),
    ]
    payload: Any = Field(default_factory=dict, description="Any JSON value.")
    queue: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "default"
    delay_s: Annotated[float | None, Field(ge=0, le=MAX_DELAY_S)] = None
    eta: datetime | None = Field(
        default=None,
        # JSON has no date type: an RFC 3339 string is the one way to send one.
        strict=False,
        description="Run at this (timezone-aware) time, at most one year from now.",
    )
    max_retries: Annotated[int | None, Field(ge=0, le=1000)] = None
    backoff: BackoffPolicy | None = None
    timeout_s: Annotated[float | None, Field(gt=0, le=86_400)] = None

    @field_validator("eta", mode="before")
    @classmethod
    def _eta_is_a_string(cls, value: object) -> object:
        # Lax datetime parsing would take 1 or "1700000000" as seconds since 1970.
        if value is not None and not (isinstance(value, str) and _DATE_PREFIX.match(value)):
            raise ValueError("eta must be an RFC 3339 date-time string")
        return value

    @field_validator("eta")
    @classmethod
    def _eta_within_cap(cls, value: datetime | None) -> datetime | None:
        return check_eta(value)

    @model_validator(mode="after")
    def _valid_as_task(self) -> TaskCreate:
        # The core model owns the cross-field rules (delay or eta, aware eta); check them here
        # so that a violation is a 422 on the body, not an error after validation.
        try:
            self.to_spec(None, None)
        except ValidationError as exc:
            raise ValueError("; ".join(str(e["msg"]) for e in exc.errors())) from None
        return self

    def to_spec(self, idempotency_key: str | None, traceparent: str | None) -> TaskSpec:
        """The core model, with the header-borne options."""
        return TaskSpec(
            **self.model_dump(exclude_none=True, exclude={"idempotency_key"}),
            idempotency_key=idempotency_key,
            traceparent=traceparent,
        )


class BatchItem(TaskCreate):
    """A task in a batch; its idempotency key travels in the body."""

    idempotency_key: Annotated[
        str | None, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS)
    ] = None


class BatchCreate(BaseModel):
    """Tasks to enqueue together: all are validated before any is written."""

    model_config = STRICT_BODY

    tasks: list[BatchItem] = Field(min_length=1)


class TaskCreated(BaseModel):
    """The id of an enqueued task; ``created`` is false for an idempotent replay."""

    id: str
    state: TaskState
    created: bool


class BatchCreated(BaseModel):
    """Ids in the order the tasks were given."""

    tasks: list[TaskCreated]


class LegacyEnqueued(BaseModel):
    """Answer of the original ``POST /enqueue``."""

    task_id: str
    status: TaskState


class CancelResult(BaseModel):
    """``cancelled``: it will not run; ``cancel_requested``: it runs and is being stopped."""

    id: str
    status: Literal["cancelled", "cancel_requested"]


class QueueStatsOut(BaseModel):
    """Depths per state, lifetime counters and the age of the oldest waiting task."""

    queue: str
    queued: int
    scheduled: int
    running: int
    dead: int
    oldest_queued_age_s: float
    counters: dict[str, int]


class QueueList(BaseModel):
    """Every known queue."""

    queues: list[QueueStatsOut]


class DeadLetterList(BaseModel):
    """A page of dead tasks; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[TaskRecord]
    total: int
    next_cursor: str | None


class CountResult(BaseModel):
    """How many tasks an operation affected."""

    count: int


class ConsumeOnceResult(BaseModel):
    """What ``consume-once`` did: nothing (empty queue), or one attempt and its outcome."""

    task_id: str | None
    outcome: Literal["succeeded", "retry", "dead", "cancelled", "giveback", "lost"] | None
    task: TaskRecord | None


class SystemMetrics(BaseModel):
    """Totals, rates and depths, for API users (Prometheus scrapes the metrics port)."""

    queues: dict[str, QueueStatsOut]
    totals: dict[str, int]
    rates_per_s: dict[str, float] | None = Field(
        description="Per-second rates since this api replica's previous sample (null at first)."
    )


class Health(BaseModel):
    """Probe answer."""

    status: Literal["ok"]


__all__ = ["DeadReason", "TaskRecord"]
