"""Every transition script against a real Redis: where a task is after each step."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from taskforge.broker import Broker, Outcome
from taskforge.broker.admin import (
    cancel_task,
    dead_letters,
    get_task,
    purge_dead,
    queue_stats,
    requeue_dead,
    requeue_dead_task,
)
from taskforge.broker.consume import fetch, finish, heartbeat
from taskforge.broker.maintenance import promote_due, reclaim_expired
from taskforge.errors import IdempotencyConflict, InvalidTask, TaskNotCancellable, TaskNotFound
from taskforge.keys import QueueKeys
from taskforge.models import DeadReason, TaskSpec, TaskState
from tests.integration.conftest import enqueue

LEASE_MS = 30_000


async def places(broker: Broker, queue: str, task_id: str) -> dict[str, bool]:
    """Which of the queue's structures hold ``task_id`` right now."""
    keys = QueueKeys(queue)
    r = broker.redis
    entries = await r.xrange(keys.stream)
    pending = await r.xpending_range(keys.stream, broker.group, "-", "+", 1000)
    undelivered = {f["id"] for mid, f in entries} - {
        f["id"] for mid, f in entries if any(p["message_id"] == mid for p in pending)
    }
    return {
        "stream": task_id in undelivered,
        "pending": any(
            f["id"] == task_id for mid, f in entries if any(p["message_id"] == mid for p in pending)
        ),
        "scheduled": await r.zscore(keys.scheduled, task_id) is not None,
        "leases": await r.zscore(keys.leases, task_id) is not None,
        "dead": await r.zscore(keys.dead, task_id) is not None,
    }


async def finish_one(broker: Broker, queue: str, worker: str, outcome: Outcome) -> list[str]:
    return await finish(broker, queue, worker, [outcome], task_ttl_s=60, dead_ttl_s=120)


async def test_enqueue_fetch_succeed(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="echo", payload={"a": 1}, queue=queue_name))
    assert res.created
    assert await places(broker, queue_name, res.task_id) == {
        "stream": True,
        "pending": False,
        "scheduled": False,
        "leases": False,
        "dead": False,
    }
    tasks, delivered, _ = await fetch(broker, queue_name, "w1", 10, LEASE_MS)
    assert delivered == 1 and [t.id for t in tasks] == [res.task_id]
    assert tasks[0].attempts == 1 and tasks[0].payload_json == '{"a":1}'
    where = await places(broker, queue_name, res.task_id)
    assert where["pending"] and where["leases"] and not where["stream"]
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.RUNNING and record.worker == "w1"

    stale = await finish_one(
        broker, queue_name, "w1", Outcome(res.task_id, "succeeded", '{"ok":true}')
    )
    assert stale == []
    assert not any((await places(broker, queue_name, res.task_id)).values())
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.SUCCEEDED and record.result == {"ok": True}
    assert [e.event for e in record.events] == ["enqueued", "started", "succeeded"]
    assert 0 < await broker.redis.ttl(QueueKeys(queue_name).task(res.task_id)) <= 60
    assert await broker.redis.xlen(QueueKeys(queue_name).stream) == 0


async def test_retry_then_promote_then_dead(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name, max_retries=1))
    await fetch(broker, queue_name, "w1", 1, LEASE_MS)
    await finish_one(
        broker, queue_name, "w1", Outcome(res.task_id, "retry", "boom", "tb", delay_ms=0)
    )
    assert (await places(broker, queue_name, res.task_id))["scheduled"]
    assert (await get_task(broker, res.task_id)).state is TaskState.FAILED
    assert await promote_due(broker, queue_name, 100) == 1
    assert (await places(broker, queue_name, res.task_id))["stream"]
    (task,), _, _ = await fetch(broker, queue_name, "w2", 1, LEASE_MS)
    assert task.attempts == 2
    await finish_one(
        broker,
        queue_name,
        "w2",
        Outcome(res.task_id, "dead", "boom again", "tb", dead_reason=DeadReason.RETRIES_EXHAUSTED),
    )
    where = await places(broker, queue_name, res.task_id)
    assert where == {
        "stream": False,
        "pending": False,
        "scheduled": False,
        "leases": False,
        "dead": True,
    }
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.DEAD
    assert record.dead_reason is DeadReason.RETRIES_EXHAUSTED
    assert record.last_error == "boom again"
    events = [e.event for e in record.events]
    assert events == [
        "enqueued",
        "started",
        "failed",
        "retry_scheduled",
        "queued",
        "started",
        "failed",
        "dead",
    ]


async def test_delayed_task_waits_until_due(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name, delay_s=30))
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.SCHEDULED and record.scheduled_for is not None
    assert await promote_due(broker, queue_name, 100) == 0
    tasks, delivered, _ = await fetch(broker, queue_name, "w", 10, LEASE_MS)
    assert tasks == [] and delivered == 0


async def test_idempotency_key_returns_first_task(broker: Broker, queue_name: str) -> None:
    spec = TaskSpec(type="x", queue=queue_name, payload={"n": 1}, idempotency_key="k1")
    (first,) = await enqueue(broker, spec)
    (second,) = await enqueue(broker, spec)
    assert first.created and not second.created and first.task_id == second.task_id
    assert await broker.redis.xlen(QueueKeys(queue_name).stream) == 1
    other = TaskSpec(type="x", queue=queue_name, payload={"n": 2}, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict, match="k1"):
        await enqueue(broker, other)
    assert await broker.redis.xlen(QueueKeys(queue_name).stream) == 1


async def test_batch_with_conflict_writes_nothing(broker: Broker, queue_name: str) -> None:
    await enqueue(broker, TaskSpec(type="x", queue=queue_name, idempotency_key="dup"))
    batch = [TaskSpec(type="x", queue=queue_name, payload={"i": i}) for i in range(5)]
    batch.append(TaskSpec(type="x", queue=queue_name, payload="other", idempotency_key="dup"))
    with pytest.raises(IdempotencyConflict):
        await enqueue(broker, *batch)
    assert await broker.redis.xlen(QueueKeys(queue_name).stream) == 1


async def test_same_key_twice_in_one_batch(broker: Broker, queue_name: str) -> None:
    spec = TaskSpec(type="x", queue=queue_name, idempotency_key="twice")
    first, second = await enqueue(broker, spec, spec)
    assert first.created and not second.created and first.task_id == second.task_id


async def test_oversized_payload_refused(broker: Broker, queue_name: str) -> None:
    with pytest.raises(InvalidTask, match="larger than"):
        await enqueue(broker, TaskSpec(type="x", queue=queue_name, payload="x" * 70_000))
    # Refused before Redis is asked anything: the queue is not even registered.
    keys = QueueKeys(queue_name)
    assert await broker.redis.exists(keys.stream, keys.meta, keys.counters) == 0
    assert not await broker.has_queue(queue_name)


async def test_giveback_keeps_attempts(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name))
    await fetch(broker, queue_name, "w", 1, LEASE_MS)
    await finish_one(broker, queue_name, "w", Outcome(res.task_id, "giveback"))
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.QUEUED and record.attempts == 0
    assert (await places(broker, queue_name, res.task_id))["stream"]
    assert record.events[-1].event == "returned"


async def test_finish_by_wrong_worker_is_stale(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name))
    await fetch(broker, queue_name, "w1", 1, LEASE_MS)
    stale = await finish_one(broker, queue_name, "intruder", Outcome(res.task_id, "succeeded"))
    assert stale == [res.task_id]
    assert (await get_task(broker, res.task_id)).state is TaskState.RUNNING


async def test_unknown_outcome_rejected_without_writes(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name))
    await fetch(broker, queue_name, "w1", 1, LEASE_MS)
    bogus = Outcome(res.task_id, "exploded")  # type: ignore[arg-type]
    with pytest.raises(ResponseError, match="unknown outcome"):
        await finish(
            broker,
            queue_name,
            "w1",
            [Outcome(res.task_id, "succeeded"), bogus],
            task_ttl_s=60,
            dead_ttl_s=60,
        )
    assert (await get_task(broker, res.task_id)).state is TaskState.RUNNING


async def test_lease_expiry_reclaim_counts_attempt(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name))
    await fetch(broker, queue_name, "dead-worker", 1, 50)
    await asyncio.sleep(0.1)
    assert await reclaim_expired(broker, queue_name, 100, task_ttl_s=60) == 1
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.QUEUED and record.attempts == 1
    assert record.events[-1].event == "abandoned"
    assert (await places(broker, queue_name, res.task_id))["stream"]
    # the dead worker's late result is refused
    stale = await finish_one(broker, queue_name, "dead-worker", Outcome(res.task_id, "succeeded"))
    assert stale == [res.task_id]
    (task,), _, _ = await fetch(broker, queue_name, "w2", 1, LEASE_MS)
    assert task.attempts == 2


async def test_heartbeat_extends_and_reports_lost_and_cancel(
    broker: Broker, queue_name: str
) -> None:
    a, b = await enqueue(
        broker, TaskSpec(type="x", queue=queue_name), TaskSpec(type="x", queue=queue_name)
    )
    await fetch(broker, queue_name, "w", 2, 200)
    lost, cancel = await heartbeat(broker, queue_name, "w", [a.task_id, b.task_id, "nope"], 60_000)
    assert lost == ["nope"] and cancel == []
    await asyncio.sleep(0.3)
    assert (
        await reclaim_expired(broker, queue_name, 100, task_ttl_s=60) == 0
    )  # extended: nothing to reclaim
    assert await cancel_task(broker, b.task_id, task_ttl_s=60) == "cancel_requested"
    lost, cancel = await heartbeat(broker, queue_name, "w", [a.task_id, b.task_id], 60_000)
    assert lost == [] and cancel == [b.task_id]
    lost, _ = await heartbeat(broker, queue_name, "other", [a.task_id], 60_000)
    assert lost == [a.task_id]


async def test_cancel_queued_and_scheduled(broker: Broker, queue_name: str) -> None:
    queued, scheduled = await enqueue(
        broker,
        TaskSpec(type="x", queue=queue_name),
        TaskSpec(type="x", queue=queue_name, delay_s=60),
    )
    assert await cancel_task(broker, queued.task_id, task_ttl_s=60) == "cancelled"
    assert await cancel_task(broker, scheduled.task_id, task_ttl_s=60) == "cancelled"
    assert not (await places(broker, queue_name, scheduled.task_id))["scheduled"]
    tasks, delivered, _ = await fetch(broker, queue_name, "w", 10, LEASE_MS)
    assert tasks == [] and delivered == 1  # the cancelled entry is read and dropped
    assert await broker.redis.xlen(QueueKeys(queue_name).stream) == 0
    with pytest.raises(TaskNotCancellable, match="cancelled"):
        await cancel_task(broker, queued.task_id, task_ttl_s=60)
    with pytest.raises(TaskNotFound):
        await cancel_task(broker, f"{queue_name}.{'0' * 32}", task_ttl_s=60)
    with pytest.raises(TaskNotFound):
        await cancel_task(broker, "not-an-id", task_ttl_s=60)


async def _make_dead(
    broker: Broker, queue: str, n: int, reason: DeadReason = DeadReason.RETRIES_EXHAUSTED
) -> list[str]:
    results = await enqueue(broker, *[TaskSpec(type=f"t{i % 2}", queue=queue) for i in range(n)])
    tasks, _, _ = await fetch(broker, queue, "w", n, LEASE_MS)
    await finish(
        broker,
        queue,
        "w",
        [Outcome(t.id, "dead", "err", dead_reason=reason) for t in tasks],
        task_ttl_s=60,
        dead_ttl_s=120,
    )
    return [r.task_id for r in results]


async def test_dlq_list_filter_requeue_purge(broker: Broker, queue_name: str) -> None:
    ids = await _make_dead(broker, queue_name, 6)
    page = await dead_letters(broker, queue_name, limit=4)
    assert page.total == 6 and len(page.items) == 4 and page.next_cursor == 4
    rest = await dead_letters(broker, queue_name, cursor=page.next_cursor or 0, limit=4)
    assert len(rest.items) == 2 and rest.next_cursor is None
    assert {r.id for r in page.items + rest.items} == set(ids)
    t1 = await dead_letters(broker, queue_name, task_type="t1", limit=50)
    assert len(t1.items) == 3 and all(r.type == "t1" for r in t1.items)
    none = await dead_letters(broker, queue_name, reason=DeadReason.TIMED_OUT)
    assert none.items == []

    await requeue_dead_task(broker, ids[0])
    record = await get_task(broker, ids[0])
    assert record.state is TaskState.QUEUED and record.attempts == 0
    assert await broker.redis.ttl(QueueKeys(queue_name).task(ids[0])) == -1
    with pytest.raises(TaskNotFound):
        await requeue_dead_task(broker, ids[0])
    assert await requeue_dead(broker, queue_name, [], limit=2) == 2
    assert (await queue_stats(broker, queue_name)).dead == 3
    # Tasks that died in the same millisecond have no defined order: read who is still dead.
    still_dead = await broker.redis.zrange(QueueKeys(queue_name).dead, 0, -1)
    assert await purge_dead(broker, queue_name, batch=2) == 3
    assert (await queue_stats(broker, queue_name)).dead == 0
    for task_id in still_dead:
        with pytest.raises(TaskNotFound):
            await get_task(broker, task_id)


async def test_queue_stats_counts_each_state(broker: Broker, queue_name: str) -> None:
    await enqueue(broker, *[TaskSpec(type="x", queue=queue_name) for _ in range(5)])
    await enqueue(broker, TaskSpec(type="x", queue=queue_name, delay_s=60))
    await fetch(broker, queue_name, "w", 2, LEASE_MS)
    stats = await queue_stats(broker, queue_name)
    assert (stats.queued, stats.scheduled, stats.running, stats.dead) == (3, 1, 2, 0)
    assert stats.counters["enqueued"] == 6
    assert stats.oldest_queued_age_s >= 0


async def test_fetch_recreates_missing_group(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name))
    await broker.redis.xgroup_destroy(QueueKeys(queue_name).stream, broker.group)
    tasks, _, _ = await fetch(broker, queue_name, "w", 1, LEASE_MS)
    assert tasks == []
    tasks, _, _ = await fetch(broker, queue_name, "w", 1, LEASE_MS)
    assert [t.id for t in tasks] == [res.task_id]


async def test_outcome_of_an_earlier_attempt_is_stale(broker: Broker, queue_name: str) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="x", queue=queue_name))
    await fetch(broker, queue_name, "w1", 1, 50)
    await asyncio.sleep(0.1)
    assert await reclaim_expired(broker, queue_name, 10, task_ttl_s=60) == 1
    (again,), _, _ = await fetch(broker, queue_name, "w1", 1, LEASE_MS)
    assert again.attempts == 2
    late = Outcome(res.task_id, "succeeded", '"from attempt 1"', attempt=1)
    assert await finish_one(broker, queue_name, "w1", late) == [res.task_id]
    assert (await get_task(broker, res.task_id)).state is TaskState.RUNNING
    current = Outcome(res.task_id, "succeeded", '"from attempt 2"', attempt=2)
    assert await finish_one(broker, queue_name, "w1", current) == []
    assert (await get_task(broker, res.task_id)).result == "from attempt 2"


async def test_cancel_request_wins_over_giveback_retry_and_reclaim(
    broker: Broker, queue_name: str
) -> None:
    ids = [r.task_id for r in await enqueue(
        broker, *[TaskSpec(type="x", queue=queue_name) for _ in range(3)]
    )]  # fmt: skip
    await fetch(broker, queue_name, "w", 3, 100)
    for task_id in ids:
        assert await cancel_task(broker, task_id, task_ttl_s=60) == "cancel_requested"
    await finish_one(broker, queue_name, "w", Outcome(ids[0], "giveback", attempt=1))
    await finish_one(
        broker, queue_name, "w", Outcome(ids[1], "retry", "boom", delay_ms=0, attempt=1)
    )
    await asyncio.sleep(0.15)
    assert await reclaim_expired(broker, queue_name, 10, task_ttl_s=60) == 1
    for task_id in ids:
        record = await get_task(broker, task_id)
        assert record.state is TaskState.CANCELLED, (task_id, record.state)
        assert not any((await places(broker, queue_name, task_id)).values())
    assert 0 < await broker.redis.ttl(QueueKeys(queue_name).task(ids[2])) <= 60
