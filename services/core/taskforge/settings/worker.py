"""Settings of the worker service (``taskforge-worker``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from taskforge.keys import validate_queue_name
from taskforge.settings.handlers import HandlerSettings, split_csv


class WorkerSettings(HandlerSettings):
    """How a worker fetches, runs, heartbeats and reports tasks."""

    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9102
    #: Queues in strict priority order: a later queue is read only when earlier ones are empty.
    queues: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["default"])
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 32
    #: Tasks fetched per round trip; 0 means "as many as there are free slots".
    prefetch: Annotated[int, Field(ge=0, le=10_000)] = 0
    lease_s: Annotated[float, Field(ge=0.5, le=3600)] = 30.0
    heartbeat_interval_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 25.0
    #: Longest blocking wait for new work; bounds how late a worker notices shutdown.
    block_ms: Annotated[int, Field(ge=10, le=60_000)] = 1000
    #: /healthz fails when the fetch loop made no progress for this long while not waiting.
    stall_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    sync_threads: Annotated[int, Field(ge=1, le=1000)] = 16
    worker_id: str | None = None

    @field_validator("queues", mode="before")
    @classmethod
    def _queues_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one queue is required")
        return [validate_queue_name(q) for q in value]

    @model_validator(mode="after")
    def _heartbeat_inside_lease(self) -> WorkerSettings:
        if self.heartbeat_interval_s * 2 > self.lease_s:
            raise ValueError(
                "TASKFORGE_HEARTBEAT_INTERVAL_S must be at most half of TASKFORGE_LEASE_S, "
                "or one late heartbeat would lose the lease"
            )
        return self

    @property
    def fetch_batch(self) -> int:
        """Most tasks asked for in one fetch."""
        return self.prefetch or self.concurrency
