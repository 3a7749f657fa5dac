"""The queue registry: new queues registered within the limit, idle empty ones reaped.

Two keys say a queue is live, in different cluster slots: its name in the registry set (what
the limit counts, what the scheduler and the listings walk) and its marker hash inside its own
slot (what the enqueue script requires). No script can touch both, so each side writes its
own key first and then checks the other's:

- an enqueue of an unregistered queue registers it (atomically within the limit), creates the
  marker, then checks the registry again;
- a reap deletes the marker (atomically with the emptiness check), removes the name from the
  registry, then checks for a marker again and restores the name if one appeared.

Whichever check runs last sees the other's write, so a queue that holds tasks is never left
out of the registry. Restoring a name may pass the limit by the few queues reaped at that
instant; a refusal would strand tasks already written, which is worse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from taskforge.broker.connection import Broker
from taskforge.errors import ErrorCode, ScriptError, error_from_code
from taskforge.keys import QUEUES_REGISTRY, QueueKeys

#: Queues per pipelined round trip when a pass covers many queues.
PIPELINE_CHUNK = 500

#: Registration rounds before giving up; a second is needed only when a reap raced the first.
_CLAIM_ROUNDS = 3

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = PIPELINE_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def run_per_queue(
    broker: Broker,
    script: str,
    queues: Sequence[str],
    keys_of: Callable[[QueueKeys], list[str]],
    args: list[Any],
) -> list[Any]:
    """Run ``script`` once for each queue, pipelined: one round trip per chunk of queues.

    Returns the replies in the order of ``queues``.
    """
    replies: list[Any] = []
    for chunk in chunks(queues):
        async with broker.redis.pipeline(transaction=False) as pipe:
            for queue in chunk:
                await broker.scripts.queue(pipe, script, keys_of(QueueKeys(queue)), args)
            replies.extend(await pipe.execute())
    return replies


async def claim_queues(broker: Broker, queues: Sequence[str], *, touch: bool) -> None:
    """Make every queue of ``queues`` live, so that tasks can be written to it.

    Args:
        broker: the Redis broker; its policy gives the limit.
        queues: distinct queue names, already checked against the policy.
        touch: refresh the markers of live queues first and register only the others (a
            multi-queue batch does this so that no queue of it is reaped mid-batch); False
            when the caller knows every queue needs registering.

    Raises:
        QueueLimitReached: the new queues would pass the limit; none was registered.
        RedisUnavailable: Redis could not be reached (the caller translates errors).
    """
    missing = await _unmarked(broker, queues) if touch else list(queues)
    for _ in range(_CLAIM_ROUNDS):
        if not missing:
            return
        code, size = await broker.scripts.run(
            "register_queues", [QUEUES_REGISTRY], [broker.policy.max_queues, *missing]
        )
        if code == ErrorCode.QUEUE_LIMIT:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" * (len(missing) > 5))
            limit = f"{size} queues exist, the limit is {broker.policy.max_queues}"
            raise error_from_code(code, script="register_queues", subject=shown, detail=limit)
        await _mark(broker, missing, "create")
        await broker.create_groups(missing)
        missing = await _unregistered(broker, missing)
    raise ScriptError(f"queue(s) {', '.join(missing)} kept leaving the registry")


async def _mark(broker: Broker, queues: Sequence[str], mode: str) -> list[int]:
    async with broker.redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            await broker.scripts.queue(pipe, "queue_mark", [QueueKeys(queue).meta], [mode])
        return [int(r) for r in await pipe.execute()]


async def _unmarked(broker: Broker, queues: Sequence[str]) -> list[str]:
    marked = await _mark(broker, queues, "touch")
    return [queue for queue, ok in zip(queues, marked, strict=True) if not ok]


async def _unregistered(broker: Broker, queues: Sequence[str]) -> list[str]:
    members = await broker.redis.smismember(QUEUES_REGISTRY, list(queues))
    return [queue for queue, member in zip(queues, members, strict=True) if not member]


async def reap_queues(broker: Broker, queues: Sequence[str], *, idle_s: float) -> list[str]:
    """Remove from the registry the queues of ``queues`` that are empty and idle.

    Idle: no enqueue for ``idle_s``. A reaped queue's finished task records, idempotency keys,
    stream and consumer group stay (they expire, or are tiny and may be read by workers and
    KEDA); its lifetime counters go. Returns the reaped queues.
    """
    return await unregister(broker, await unmark_idle(broker, queues, idle_s=idle_s))


async def unmark_idle(broker: Broker, queues: Sequence[str], *, idle_s: float) -> list[str]:
    """First half of a reap: delete the markers of the empty, idle queues; returns those."""
    replies = await run_per_queue(
        broker,
        "reap_queue",
        queues,
        lambda k: [k.stream, k.scheduled, k.leases, k.dead, k.meta, k.counters],
        [int(idle_s * 1000), broker.group],
    )
    return [q for q, reaped in zip(queues, replies, strict=True) if reaped]


async def unregister(broker: Broker, unmarked: Sequence[str]) -> list[str]:
    """Second half: drop unmarked queues from the registry, keeping those marked again since."""
    if not unmarked:
        return []
    async with broker.redis.pipeline(transaction=False) as pipe:
        pipe.srem(QUEUES_REGISTRY, *unmarked)
        for queue in unmarked:
            pipe.exists(QueueKeys(queue).meta)
        _, *marked = await pipe.execute()
    # An enqueue that registered a queue again meanwhile has marked it: it stays.
    back = [q for q, m in zip(unmarked, marked, strict=True) if m]
    if back:
        await broker.redis.sadd(QUEUES_REGISTRY, *back)
    return [q for q in unmarked if q not in back]
