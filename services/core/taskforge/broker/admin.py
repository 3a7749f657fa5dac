"""Reads and operator actions: task status, cancel, queue statistics, the dead-letter queue."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskforge.broker.connection import Broker, translate_errors
from taskforge.broker.records import parse_record
from taskforge.broker.registry import run_per_queue
from taskforge.errors import TaskNotFound, error_from_code
from taskforge.ids import queue_of
from taskforge.keys import OTHER_QUEUES, QueueKeys
from taskforge.models import DeadReason, TaskRecord

#: Records read per round trip while filtering the dead-letter queue.
_DLQ_SCAN_BATCH = 200


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth of one queue per state, its counters, and the age of its oldest waiting task."""

    queue: str
    queued: int
    scheduled: int
    running: int
    dead: int
    oldest_queued_age_s: float
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        """Tasks the queue holds in any state."""
        return self.queued + self.scheduled + self.running + self.dead


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of dead tasks; pass ``next_cursor`` back to read the next page."""

    items: list[TaskRecord]
    total: int
    next_cursor: int | None


async def get_task(broker: Broker, task_id: str) -> TaskRecord:
    """Return the record and event log of ``task_id``.

    Raises:
        TaskNotFound: the id is malformed, unknown or its record expired.
    """
    try:
        keys = QueueKeys(queue_of(task_id))
    except ValueError as exc:
        raise TaskNotFound(f"task {task_id} not found: {exc}") from exc
    async with translate_errors("get_task"), broker.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.task(task_id))
        pipe.lrange(keys.events(task_id), 0, -1)
        fields, events = await pipe.execute()
    if not fields:
        raise TaskNotFound(f"task {task_id} not found")
    return parse_record(fields, events)


async def cancel_task(broker: Broker, task_id: str, *, task_ttl_s: int) -> str:
    """Cancel ``task_id``; returns ``cancelled`` or ``cancel_requested`` (it is running).

    Raises:
        TaskNotFound: no such task.
        TaskNotCancellable: it already finished.
    """
    try:
        keys = QueueKeys(queue_of(task_id))
    except ValueError as exc:
        raise TaskNotFound(f"task {task_id} not found: {exc}") from exc
    async with translate_errors("cancel"):
        code, detail = await broker.scripts.run(
            "cancel", [keys.scheduled, keys.counters, keys.base], [task_id, task_ttl_s * 1000]
        )
    if code < 0:
        raise error_from_code(code, script="cancel", subject=task_id, detail=detail)
    return str(detail)


async def queue_stats(broker: Broker, queue: str) -> QueueStats:
    """Depths and counters of ``queue`` in one round trip."""
    (stats,) = await queue_stats_many(broker, [queue])
    return stats


async def queue_stats_many(broker: Broker, queues: Sequence[str]) -> list[QueueStats]:
    """Stats of ``queues``, in their order: one pipelined round trip per 500 queues."""
    async with translate_errors("queue_stats"):
        replies = await run_per_queue(
            broker,
            "queue_stats",
            queues,
            lambda k: [k.stream, k.scheduled, k.leases, k.dead, k.counters],
            [broker.group],
        )
    return [_parse_stats(q, r) for q, r in zip(queues, replies, strict=True)]


def _parse_stats(queue: str, reply: list[Any]) -> QueueStats:
    waiting, _pending, scheduled, running, dead, oldest_ms, now_ms = (int(v) for v in reply[:7])
    counters = reply[7:]
    return QueueStats(
        queue=queue,
        queued=waiting,
        scheduled=scheduled,
        running=running,
        dead=dead,
        oldest_queued_age_s=max(0.0, (now_ms - oldest_ms) / 1000) if oldest_ms else 0.0,
        counters={counters[i]: int(counters[i + 1]) for i in range(0, len(counters), 2)},
    )


def busiest(stats: Sequence[QueueStats], limit: int) -> tuple[list[QueueStats], QueueStats | None]:
    """The ``limit`` queues holding the most tasks, and the sum of the others (None if none).

    This is what keeps metric label sets and ``GET /metrics`` bounded: the queues that matter
    to an operator (deep backlogs, many dead tasks) keep their names; ties go to the queue
    with more enqueues, then to the name, so that the selection is stable.
    """
    ranked = sorted(stats, key=lambda s: (-s.depth, -s.counters.get("enqueued", 0), s.queue))
    top, rest = ranked[:limit], ranked[limit:]
    if not rest:
        return top, None
    counters: Counter[str] = Counter()
    for s in rest:
        counters.update(s.counters)
    other = QueueStats(
        queue=OTHER_QUEUES,
        queued=sum(s.queued for s in rest),
        scheduled=sum(s.scheduled for s in rest),
        running=sum(s.running for s in rest),
        dead=sum(s.dead for s in rest),
        oldest_queued_age_s=max(s.oldest_queued_age_s for s in rest),
        counters=dict(counters),
    )
    return top, other


async def dead_letters(
    broker: Broker,
    queue: str,
    *,
    cursor: int = 0,
    limit: int = 50,
    task_type: str | None = None,
    reason: DeadReason | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> DeadLetterPage:
    """A page of dead tasks of ``queue``, oldest death first, optionally filtered."""
    keys = QueueKeys(queue)
    low = "-inf" if since_ms is None else str(since_ms)
    high = "+inf" if until_ms is None else str(until_ms)
    items: list[TaskRecord] = []
    position = cursor
    async with translate_errors("dead_letters"):
        total = int(await broker.redis.zcount(keys.dead, low, high))
        while len(items) < limit and position < total:
            ids: list[str] = await broker.redis.zrangebyscore(  # type: ignore[assignment]
                keys.dead, low, high, start=position, num=_DLQ_SCAN_BATCH
            )
            if not ids:
                break
            async with broker.redis.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hgetall(keys.task(task_id))
                    pipe.lrange(keys.events(task_id), 0, -1)
                replies = await pipe.execute()
            for offset in range(len(ids)):
                position += 1
                fields, events = replies[2 * offset], replies[2 * offset + 1]
                if not fields:
                    continue
                record = parse_record(fields, events)
                if (task_type and record.type != task_type) or (
                    reason and record.dead_reason != reason
                ):
                    continue
                items.append(record)
                if len(items) == limit:
                    break
    return DeadLetterPage(items, total, position if position < total else None)


async def requeue_dead(broker: Broker, queue: str, task_ids: list[str], *, limit: int) -> int:
    """Requeue the given dead tasks, or up to ``limit`` of the oldest when none are given."""
    keys = QueueKeys(queue)
    async with translate_errors("dlq_requeue"):
        count, _missing = await broker.scripts.run(
            "dlq_requeue", [keys.dead, keys.stream, keys.counters, keys.base], [limit, *task_ids]
        )
    return int(count)


async def requeue_dead_task(broker: Broker, task_id: str) -> None:
    """Requeue one dead task.

    Raises:
        TaskNotFound: the task is not in its queue's dead-letter queue.
    """
    try:
        queue = queue_of(task_id)
    except ValueError as exc:
        raise TaskNotFound(f"task {task_id} not found: {exc}") from exc
    if await requeue_dead(broker, queue, [task_id], limit=1) == 0:
        raise TaskNotFound(f"task {task_id} is not in the dead-letter queue")


async def purge_dead(broker: Broker, queue: str, *, batch: int = 500) -> int:
    """Delete every dead task of ``queue`` in bounded batches; returns how many."""
    keys = QueueKeys(queue)
    removed = 0
    async with translate_errors("dlq_purge"):
        while True:
            count = int(await broker.scripts.run("dlq_purge", [keys.dead, keys.base], [batch]))
            removed += count
            if count < batch:
                return removed
