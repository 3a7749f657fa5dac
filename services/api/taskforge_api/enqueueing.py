"""Turning API bodies into enqueued tasks: the single, batch and legacy routes share this."""

from __future__ import annotations

import time

from taskforge.broker import Broker
from taskforge.broker.enqueue import EnqueueResult, enqueue_many
from taskforge.errors import InvalidTask
from taskforge.models import TaskSpec, TaskState
from taskforge.settings import ApiSettings
from taskforge_api.schemas import TaskCreated


async def enqueue_specs(
    broker: Broker, settings: ApiSettings, specs: list[TaskSpec]
) -> list[TaskCreated]:
    """Enqueue ``specs`` and describe each result.

    Raises:
        InvalidTask: a payload is too large or the batch is over the limit.
        IdempotencyConflict: a key was reused with another body.
        RedisUnavailable: Redis could not be reached.
    """
    if len(specs) > settings.max_batch_size:
        raise InvalidTask(f"a batch holds at most {settings.max_batch_size} tasks")
    now_ms = int(time.time() * 1000)
    results = await enqueue_many(
        broker,
        specs,
        now_ms=now_ms,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        max_payload_bytes=settings.max_payload_bytes,
    )
    return [_created(spec, result, now_ms) for spec, result in zip(specs, results, strict=True)]


def _created(spec: TaskSpec, result: EnqueueResult, now_ms: int) -> TaskCreated:
    state = TaskState.SCHEDULED if spec.due_ms(now_ms) > now_ms else TaskState.QUEUED
    return TaskCreated(id=result.task_id, state=state, created=result.created)
