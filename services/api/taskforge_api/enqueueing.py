"""Turning API bodies into enqueued tasks: the single, batch and legacy routes share this."""

from __future__ import annotations

import time

from taskforge.broker import Broker
from taskforge.broker.enqueue import EnqueueResult, enqueue_many
from taskforge.errors import IdempotencyConflict, InvalidTask
from taskforge.models import TaskSpec, TaskState, scoped_idempotency_key
from taskforge.settings import ApiSettings
from taskforge_api.schemas import TaskCreated


async def enqueue_specs(
    broker: Broker, settings: ApiSettings, specs: list[TaskSpec], *, scope: str
) -> list[TaskCreated]:
    """Enqueue ``specs`` for the client ``scope`` and describe each result.

    Idempotency keys are stored per client (``scope`` is its API key's id): two clients
    using the same key neither collide nor learn each other's task ids.

    Raises:
        InvalidTask: a payload is too large or the batch is over the limit.
        IdempotencyConflict: a key was reused with another body, by this same client.
        RedisUnavailable: Redis could not be reached.
    """
    if len(specs) > settings.max_batch_size:
        raise InvalidTask(f"a batch holds at most {settings.max_batch_size} tasks")
    scoped = [
        spec.model_copy(
            update={"idempotency_key": scoped_idempotency_key(scope, spec.idempotency_key)}
        )
        if spec.idempotency_key
        else spec
        for spec in specs
    ]
    now_ms = int(time.time() * 1000)
    try:
        results = await enqueue_many(
            broker,
            scoped,
            now_ms=now_ms,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            max_payload_bytes=settings.max_payload_bytes,
        )
    except IdempotencyConflict as exc:
        # Name the key as the client sent it, not as it is stored.
        raise IdempotencyConflict(str(exc).replace(f"{scope}:", "", 1)) from None
    return [_created(spec, result, now_ms) for spec, result in zip(specs, results, strict=True)]


def _created(spec: TaskSpec, result: EnqueueResult, now_ms: int) -> TaskCreated:
    state = TaskState.SCHEDULED if spec.due_ms(now_ms) > now_ms else TaskState.QUEUED
    return TaskCreated(id=result.task_id, state=state, created=result.created)
