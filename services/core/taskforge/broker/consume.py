"""The worker's side: fetch under a lease, wait for work, heartbeat, and finish in batches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from taskforge.broker.connection import Broker, translate_errors
from taskforge.keys import QueueKeys

#: Fields per started task in fetch.lua's reply.
_FETCH_FIELDS = 8

OutcomeKind = Literal["succeeded", "retry", "dead", "cancelled", "giveback"]


@dataclass(slots=True)
class FetchedTask:
    """A task a worker now holds under a lease."""

    id: str
    queue: str
    type: str
    payload_json: str
    attempts: int
    max_retries: int | None
    backoff_json: str
    timeout_s: float | None
    traceparent: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt; ``finish`` records a batch of them."""

    task_id: str
    kind: OutcomeKind
    detail: str = ""
    traceback: str = ""
    #: Retry delay in ms for ``retry``, the dead reason for ``dead``.
    extra: str = ""
    #: The attempt this outcome belongs to; 0 skips the check (tests and tools only).
    attempt: int = 0

    def args(self) -> tuple[str, str, str, str, str, str]:
        """The six ARGV fields finish.lua reads per task."""
        return (self.task_id, self.kind, self.detail, self.traceback, self.extra, str(self.attempt))


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


async def fetch(
    broker: Broker, queue: str, worker_id: str, count: int, lease_ms: int
) -> tuple[list[FetchedTask], int, str]:
    """Start up to ``count`` tasks of ``queue`` under a lease held by ``worker_id``.

    Returns:
        The started tasks, the number of stream entries read (cancelled ones included), and,
        when nothing was read, the group's last-delivered id to block on.
    """
    keys = QueueKeys(queue)
    async with translate_errors("fetch"):
        reply = await broker.scripts.run(
            "fetch",
            [keys.stream, keys.leases, keys.base],
            [broker.group, worker_id, count, lease_ms],
        )
    tasks = [
        FetchedTask(
            id=reply[i],
            queue=queue,
            type=reply[i + 1],
            payload_json=reply[i + 2],
            attempts=int(reply[i + 3]),
            max_retries=_optional_int(reply[i + 4]),
            backoff_json=reply[i + 5] or "",
            timeout_s=_optional_float(reply[i + 6]),
            traceparent=reply[i + 7] or "",
        )
        for i in range(2, len(reply), _FETCH_FIELDS)
    ]
    return tasks, int(reply[0]), reply[1]


async def wait_for_work(broker: Broker, last_ids: dict[str, str], block_ms: int) -> bool:
    """Block until a stream gets an entry newer than its last-delivered id, or time out.

    Reading with plain XREAD delivers nothing to the group: the fetch script still decides who
    gets each task. Returns True if some stream has new entries.
    """
    streams = {QueueKeys(queue).stream: last_id for queue, last_id in last_ids.items()}
    async with translate_errors("wait_for_work"):
        reply = await broker.redis.xread(streams, count=1, block=block_ms)  # type: ignore[arg-type]
    return bool(reply)


async def heartbeat(
    broker: Broker, queue: str, worker_id: str, task_ids: Iterable[str], lease_ms: int
) -> tuple[list[str], list[str]]:
    """Extend the leases on ``task_ids``; returns (lost ids, ids asked to cancel)."""
    ids = list(task_ids)
    if not ids:
        return [], []
    keys = QueueKeys(queue)
    async with translate_errors("heartbeat"):
        lost, cancel = await broker.scripts.run(
            "heartbeat", [keys.leases, keys.base], [worker_id, lease_ms, *ids]
        )
    return list(lost), list(cancel)


async def finish(
    broker: Broker,
    queue: str,
    worker_id: str,
    outcomes: Iterable[Outcome],
    *,
    task_ttl_s: int,
    dead_ttl_s: int,
) -> list[str]:
    """Record a batch of outcomes of one queue in one script call; returns stale task ids."""
    flat = [field for outcome in outcomes for field in outcome.args()]
    if not flat:
        return []
    keys = QueueKeys(queue)
    async with translate_errors("finish"):
        stale = await broker.scripts.run(
            "finish",
            [keys.stream, keys.leases, keys.scheduled, keys.dead, keys.counters, keys.base],
            [broker.group, worker_id, task_ttl_s * 1000, dead_ttl_s * 1000, *flat],
        )
    return list(stale)
