"""finish.lua releases stream entries in bulk: acknowledged, trimmed behind the oldest pending
entry, and deleted one by one only when a long attempt pins more than 10,000 behind it."""

from __future__ import annotations

from taskforge.broker import Broker, Outcome
from taskforge.broker.admin import queue_stats
from taskforge.broker.consume import fetch, finish
from taskforge.broker.enqueue import enqueue_many
from taskforge.keys import QueueKeys
from taskforge.models import TaskSpec

LEASE_MS = 60_000
#: MAX_HELD_ENTRIES in finish.lua.
MAX_HELD = 10_000


async def enqueue_n(broker: Broker, queue: str, n: int) -> None:
    for offset in range(0, n, 1000):
        specs = [TaskSpec(type="echo", queue=queue) for _ in range(offset, min(n, offset + 1000))]
        await enqueue_many(broker, specs, now_ms=0, idempotency_ttl_s=60, max_payload_bytes=1024)


async def run_all(broker: Broker, queue: str, worker: str, count: int) -> list[str]:
    """Fetch and succeed ``count`` tasks in batches; returns their ids."""
    done: list[str] = []
    while len(done) < count:
        tasks, _, _ = await fetch(broker, queue, worker, min(500, count - len(done)), LEASE_MS)
        assert tasks, "the queue ran dry"
        outcomes = [Outcome(t.id, "succeeded", "null", attempt=t.attempts) for t in tasks]
        assert await finish(broker, queue, worker, outcomes, task_ttl_s=60, dead_ttl_s=60) == []
        done += [t.id for t in tasks]
    return done


async def group_info(broker: Broker, queue: str) -> dict[str, object]:
    (info,) = await broker.redis.xinfo_groups(QueueKeys(queue).stream)
    return dict(info)


async def test_finished_entries_leave_the_stream_and_lag_stays_known(
    broker: Broker, queue_name: str
) -> None:
    await enqueue_n(broker, queue_name, 1200)
    await run_all(broker, queue_name, "w1", 1000)
    stream = QueueKeys(queue_name).stream
    # Only the 200 never delivered are left; nothing is pending.
    assert await broker.redis.xlen(stream) == 200
    info = await group_info(broker, queue_name)
    assert info["pending"] == 0
    assert info["lag"] == 200  # what KEDA reads: still computable after the trims
    await run_all(broker, queue_name, "w1", 200)
    assert await broker.redis.xlen(stream) == 0
    assert (await group_info(broker, queue_name))["lag"] == 0


async def test_a_running_task_holds_finished_entries_until_it_ends(
    broker: Broker, queue_name: str
) -> None:
    await enqueue_n(broker, queue_name, 101)
    (slow,), _, _ = await fetch(broker, queue_name, "w-slow", 1, LEASE_MS)
    await run_all(broker, queue_name, "w1", 100)
    stream = QueueKeys(queue_name).stream
    # The trim stops at the oldest pending entry, the slow task's: the 100 finished after it
    # stay in the stream (acknowledged, no longer pending) until it ends.
    assert await broker.redis.xlen(stream) == 101
    assert (await group_info(broker, queue_name))["pending"] == 1
    # Those finished entries are not a backlog: the stats (API, gauges, alerts) count none.
    stats = await queue_stats(broker, queue_name)
    assert (stats.queued, stats.running) == (0, 1)
    done = Outcome(slow.id, "succeeded", "null", attempt=slow.attempts)
    assert await finish(broker, queue_name, "w-slow", [done], task_ttl_s=60, dead_ttl_s=60) == []
    assert await broker.redis.xlen(stream) == 0


async def test_entries_pinned_by_a_long_attempt_stay_bounded(
    broker: Broker, queue_name: str
) -> None:
    total = MAX_HELD + 1500
    await enqueue_n(broker, queue_name, total + 1)
    (_slow,), _, _ = await fetch(broker, queue_name, "w-slow", 1, LEASE_MS)
    await run_all(broker, queue_name, "w1", total)
    stream = QueueKeys(queue_name).stream
    # Behind the pinned entry, finished entries pile up only to the bound; past it each batch
    # deletes its own, so the stream holds about MAX_HELD entries, not all 11,501.
    length = await broker.redis.xlen(stream)
    assert MAX_HELD - 500 <= length <= MAX_HELD + 500
    info = await group_info(broker, queue_name)
    assert info["pending"] == 1 and info["lag"] == 0
