"""Enqueue: single and batch, with idempotency keys, one script call per queue."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass

from taskforge import tracing
from taskforge.broker.connection import Broker, translate_errors
from taskforge.broker.registry import claim_queues
from taskforge.errors import ErrorCode, InvalidTask, ScriptError, error_from_code
from taskforge.ids import new_task_ids
from taskforge.keys import QueueKeys
from taskforge.models import TaskSpec


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """The id of an enqueued task, and whether this call created it."""

    task_id: str
    created: bool


def fingerprint(spec: TaskSpec) -> str:
    """Hash of everything but the idempotency key: the same key with another body is a conflict."""
    body = spec.model_dump(mode="json", exclude={"idempotency_key", "traceparent"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _task_args(
    spec: TaskSpec, task_id: str, now_ms: int, max_payload_bytes: int, traceparent: str | None
) -> list[str]:
    payload = spec.payload_json()
    # Bytes, not characters, are what the limit bounds; only text this long can pass it.
    if len(payload) * 4 > max_payload_bytes and len(payload.encode()) > max_payload_bytes:
        raise InvalidTask(f"payload is larger than {max_payload_bytes} bytes")
    due = spec.due_ms(now_ms)
    return [
        task_id,
        spec.type,
        payload,
        str(max(0, due - now_ms) if due else 0),
        "" if spec.max_retries is None else str(spec.max_retries),
        "" if spec.backoff is None else spec.backoff.model_dump_json(),
        "" if spec.timeout_s is None else repr(spec.timeout_s),
        spec.idempotency_key or "",
        fingerprint(spec) if spec.idempotency_key else "",
        traceparent or "",
    ]


async def enqueue_many(
    broker: Broker,
    specs: list[TaskSpec],
    *,
    now_ms: int,
    idempotency_ttl_s: int,
    max_payload_bytes: int,
) -> list[EnqueueResult]:
    """Enqueue ``specs``; each queue's tasks are written all or nothing by one script.

    Args:
        broker: the Redis broker.
        specs: validated task specs, in the order results are returned.
        now_ms: the caller's clock, used only to turn an ETA into a delay.
        idempotency_ttl_s: how long an idempotency key keeps returning its task.
        max_payload_bytes: largest serialised payload accepted.

    Raises:
        InvalidTask: a payload is too large (nothing is written).
        QueueNotAllowed: a queue name is reserved or outside the policy's pattern (nothing is
            written).
        QueueLimitReached: a new queue would pass the queue limit (nothing is written).
        IdempotencyConflict: a key was reused with a different body (that queue's tasks are
            not written).
        RedisUnavailable: Redis could not be reached.
    """
    by_queue: dict[str, list[int]] = defaultdict(list)
    for index, spec in enumerate(specs):
        by_queue[spec.queue].append(index)
    if not tracing.enabled():
        return await _enqueue_all(broker, specs, by_queue, now_ms, idempotency_ttl_s,
                                  max_payload_bytes, None)  # fmt: skip
    types = list({spec.type for spec in specs})
    first = specs[0].traceparent if specs else None
    with tracing.sending(list(by_queue), types, len(specs), first) as span:
        # The task records name this span: the worker's attempts continue from it.
        sent = tracing.traceparent_of(span) if span is not None else None
        results = await _enqueue_all(broker, specs, by_queue, now_ms, idempotency_ttl_s,
                                     max_payload_bytes, sent)  # fmt: skip
        if span is not None and len(results) == 1:
            span.set_attribute("taskforge.task.id", results[0].task_id)
            span.set_attribute("messaging.message.id", results[0].task_id)
        return results


async def _enqueue_all(
    broker: Broker,
    specs: list[TaskSpec],
    by_queue: dict[str, list[int]],
    now_ms: int,
    idempotency_ttl_s: int,
    max_payload_bytes: int,
    traceparent: str | None,
) -> list[EnqueueResult]:
    args: list[list[str]] = [[] for _ in specs]
    for queue, indexes in by_queue.items():
        broker.policy.check_name(queue)
        for index, task_id in zip(indexes, new_task_ids(queue, len(indexes)), strict=True):
            spec = specs[index]
            args[index] = _task_args(
                spec, task_id, now_ms, max_payload_bytes, traceparent or spec.traceparent
            )
    results: list[EnqueueResult | None] = [None] * len(specs)
    async with translate_errors("enqueue"):
        if len(by_queue) > 1:
            # Every queue is made live before any task is written: all or nothing.
            await claim_queues(broker, list(by_queue), touch=True)
        for queue, indexes in by_queue.items():
            flat = [field for i in indexes for field in args[i]]
            reply = await _enqueue_on(
                broker, queue, [idempotency_ttl_s * 1000, len(indexes), *flat]
            )
            for slot, index in enumerate(indexes):
                results[index] = EnqueueResult(str(reply[2 * slot + 1]), reply[2 * slot] == 1)
    return [r for r in results if r is not None]


async def _enqueue_on(broker: Broker, queue: str, argv: list[object]) -> list[object]:
    """Run the enqueue script on one queue, registering the queue when it asks for that."""
    keys = QueueKeys(queue)
    script_keys = [keys.stream, keys.scheduled, keys.counters, keys.meta, keys.base]
    for _ in range(3):
        reply: list[object] = await broker.scripts.run("enqueue", script_keys, argv)
        if not reply or reply[0] != ErrorCode.QUEUE_UNREGISTERED:
            break
        await claim_queues(broker, [queue], touch=False)
    else:
        raise ScriptError(f"enqueue: queue {queue} kept losing its registration")
    if reply and reply[0] == ErrorCode.IDEMPOTENCY_CONFLICT:
        raise error_from_code(
            ErrorCode.IDEMPOTENCY_CONFLICT,
            script="enqueue",
            subject=str(reply[2]),
            detail=str(reply[1]),
        )
    return reply
