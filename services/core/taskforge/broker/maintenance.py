"""The scheduler's side: promote due tasks, reclaim expired leases, forget old dead tasks."""

from __future__ import annotations

from collections.abc import Sequence

from taskforge.broker.connection import Broker, translate_errors
from taskforge.broker.registry import chunks
from taskforge.keys import QueueKeys


async def promote_due(broker: Broker, queue: str, limit: int) -> int:
    """Move up to ``limit`` due scheduled tasks of ``queue`` to its stream; returns how many."""
    keys = QueueKeys(queue)
    async with translate_errors("promote"):
        return int(
            await broker.scripts.run("promote", [keys.scheduled, keys.stream, keys.base], [limit])
        )


async def reclaim_expired(broker: Broker, queue: str, limit: int, *, task_ttl_s: int) -> int:
    """Return up to ``limit`` tasks whose lease expired to ``queue``; returns how many.

    Tasks whose cancellation was requested end cancelled (kept ``task_ttl_s``) instead.
    """
    keys = QueueKeys(queue)
    async with translate_errors("reclaim"):
        return int(
            await broker.scripts.run(
                "reclaim",
                [keys.leases, keys.stream, keys.counters, keys.base],
                [broker.group, limit, task_ttl_s * 1000],
            )
        )


async def sweep(
    broker: Broker, queues: Sequence[str], limit: int, *, task_ttl_s: int
) -> list[tuple[int, int]]:
    """Promote and reclaim up to ``limit`` tasks on each queue, pipelined.

    Returns (promoted, reclaimed) per queue, in order; a full ``limit`` means more may wait.
    An idle queue (nothing scheduled, nothing leased) costs one EXISTS in a round trip per
    500 queues; only the others run the scripts.
    """
    out: list[tuple[int, int]] = []
    async with translate_errors("sweep"):
        for chunk in chunks(queues):
            async with broker.redis.pipeline(transaction=False) as pipe:
                for queue in chunk:
                    pipe.exists(QueueKeys(queue).scheduled, QueueKeys(queue).leases)
                busy = await pipe.execute()
            active = [q for q, n in zip(chunk, busy, strict=True) if n]
            counts = await _promote_and_reclaim(broker, active, limit, task_ttl_s)
            moved = dict(zip(active, counts, strict=True))
            out.extend(moved.get(q, (0, 0)) for q in chunk)
    return out


async def _promote_and_reclaim(
    broker: Broker, queues: Sequence[str], limit: int, task_ttl_s: int
) -> list[tuple[int, int]]:
    if not queues:
        return []
    async with broker.redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            k = QueueKeys(queue)
            await broker.scripts.queue(pipe, "promote", [k.scheduled, k.stream, k.base], [limit])
            await broker.scripts.queue(
                pipe,
                "reclaim",
                [k.leases, k.stream, k.counters, k.base],
                [broker.group, limit, task_ttl_s * 1000],
            )
        replies = await pipe.execute()
    return [(int(p), int(r)) for p, r in zip(replies[::2], replies[1::2], strict=True)]


async def trim_dead_indexes(
    broker: Broker, queues: Sequence[str], dead_ttl_s: int, now_ms: int
) -> None:
    """Drop DLQ index entries whose records have expired, on every queue of ``queues``."""
    cutoff = f"({now_ms - dead_ttl_s * 1000}"
    async with translate_errors("trim_dead"):
        for chunk in chunks(queues):
            async with broker.redis.pipeline(transaction=False) as pipe:
                for queue in chunk:
                    pipe.zremrangebyscore(QueueKeys(queue).dead, "-inf", cutoff)
                await pipe.execute()
