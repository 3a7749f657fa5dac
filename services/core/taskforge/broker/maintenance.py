"""The scheduler's side: promote due tasks, reclaim expired leases, forget old dead tasks."""

from __future__ import annotations

from taskforge.broker.connection import Broker, translate_errors
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


async def trim_dead_index(broker: Broker, queue: str, dead_ttl_s: int, now_ms: int) -> int:
    """Drop DLQ index entries whose records have expired; returns how many."""
    async with translate_errors("trim_dead"):
        return int(
            await broker.redis.zremrangebyscore(
                QueueKeys(queue).dead, "-inf", f"({now_ms - dead_ttl_s * 1000}"
            )
        )
