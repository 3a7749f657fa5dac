"""The scheduler as a process: promotion without duplicates (invariant 8), delays within one
tick (invariant 4), queue depth gauges, and the reclaim of expired leases (invariant 3).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskforge.broker import Broker, Outcome
from taskforge.broker.admin import get_task
from taskforge.broker.consume import fetch, finish
from taskforge.keys import QueueKeys
from taskforge.models import DeadReason, TaskSpec, TaskState
from tests.integration.conftest import enqueue
from tests.support.processes import ServiceGroup, ServiceProcess, tf_env, wait_until
from tests.support.redis_server import RedisServer

#: Longest wait for one expected transition; generous for a loaded 2-core CI runner.
STEP_TIMEOUT_S = 30.0


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServiceGroup]:
    """Processes of the test; all SIGKILLed at its end, logs under tmp_path/logs."""
    with ServiceGroup(log_dir=tmp_path / "logs") as group:
        yield group


async def test_two_schedulers_promote_each_delayed_task_exactly_once(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    total, chunk = 10_000, 1000
    keys = QueueKeys(queue_name)
    # A server of its own: the two schedulers then see only this queue, and 10,000 records
    # do not stay behind in the session server.
    with RedisServer(dir=tmp_path / "redis") as server:
        broker = Broker.from_url(server.url)
        try:
            await broker.ensure_queue(queue_name)
            env = tf_env(tick_s=0.1, batch_size=500, queue_refresh_s=0.1)
            schedulers = [services.scheduler(server.url, env=env) for _ in range(2)]
            for scheduler in schedulers:
                await scheduler.wait_ready()
            ids: list[str] = []
            for start in range(0, total, chunk):
                # Due times spread over one second: both schedulers get ticks with work.
                specs = [
                    TaskSpec(type="record", queue=queue_name, delay_s=1.5 + (i % 10) / 10)
                    for i in range(start, start + chunk)
                ]
                ids += [r.task_id for r in await enqueue(broker, *specs)]

            async def all_promoted() -> bool:
                return await broker.redis.zcard(keys.scheduled) == 0

            await wait_until(
                all_promoted,
                STEP_TIMEOUT_S,
                message="delayed tasks left in the scheduled set",
                processes=schedulers,
            )
            entries: list[tuple[str, dict[str, str]]] = await broker.redis.xrange(  # type: ignore[assignment]
                keys.stream
            )
            async with broker.redis.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hget(keys.task(task_id), "state")
                    pipe.lrange(keys.events(task_id), 0, -1)
                replies = await pipe.execute()
            promoted = [
                s.metric("taskforge_scheduler_promoted_total", queue=queue_name) for s in schedulers
            ]
        finally:
            await broker.close()

    assert len(entries) == total
    streamed = Counter(fields["id"] for _, fields in entries)
    assert set(streamed) == set(ids)
    assert max(streamed.values()) == 1
    assert set(replies[0::2]) == {"queued"}
    queued_events = Counter(sum('"queued"' in e for e in events) for events in replies[1::2])
    assert queued_events == {1: total}  # one "queued" event per task
    assert sum(v or 0 for v in promoted) == total, promoted
    assert all(promoted), f"one scheduler did all the work: {promoted}"


async def test_delay_is_honoured_within_one_tick(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup
) -> None:
    tick_s = 0.1
    await broker.ensure_queue(queue_name)
    scheduler = services.scheduler(redis_url, env=tf_env(tick_s=tick_s, queue_refresh_s=0.1))
    await scheduler.wait_ready()
    enqueued = time.monotonic()
    [task] = await enqueue(broker, TaskSpec(type="record", queue=queue_name, delay_s=1.0))

    async def queued_after_s() -> float | None:
        state = (await get_task(broker, task.task_id)).state
        if state is TaskState.QUEUED:
            return time.monotonic() - enqueued
        assert state is TaskState.SCHEDULED
        return None

    elapsed_s: float = await wait_until(
        queued_after_s,
        5,
        interval_s=0.01,
        message="not queued 5 s after a 1 s delay",
        processes=[scheduler],
    )
    assert elapsed_s >= 0.9
    record = await get_task(broker, task.task_id)
    at = {e.event: e.at for e in record.events}
    # Both stamps come from Redis's clock: never early, late by at most a tick plus slack.
    waited_s = (at["queued"] - at["scheduled"]).total_seconds()
    assert 1.0 <= waited_s <= 1.0 + tick_s + 1.0, waited_s


async def test_scheduler_exports_queue_depth_gauges(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup
) -> None:
    now = [TaskSpec(type="record", queue=queue_name) for _ in range(7)]
    later = [TaskSpec(type="record", queue=queue_name, delay_s=3600) for _ in range(3)]
    await enqueue(broker, *now, *later)
    taken, _, _ = await fetch(broker, queue_name, "test-worker", 2, 60_000)
    dead = Outcome(taken[0].id, "dead", "boom", dead_reason=DeadReason.RETRIES_EXHAUSTED)
    assert (
        await finish(broker, queue_name, "test-worker", [dead], task_ttl_s=60, dead_ttl_s=60) == []
    )
    expected = {"queued": 5.0, "scheduled": 3.0, "running": 1.0, "dead": 1.0}

    scheduler = services.scheduler(redis_url, env=tf_env(tick_s=0.1, gauge_interval_s=0.2))
    seen: dict[str, float | None] = {}

    def depths_match() -> bool:
        for state in expected:
            seen[state] = scheduler.metric("taskforge_queue_depth", queue=queue_name, state=state)
        return seen == expected

    await wait_until(
        depths_match,
        STEP_TIMEOUT_S,
        interval_s=0.1,
        message=lambda: f"gauges {seen}, want {expected}",
        processes=[scheduler],
    )
    # Leave nothing leased behind on the shared server.
    done = Outcome(taken[1].id, "succeeded", "null")
    await finish(broker, queue_name, "test-worker", [done], task_ttl_s=60, dead_ttl_s=60)


async def test_scheduler_reclaims_expired_lease_as_an_attempt(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup
) -> None:
    keys = QueueKeys(queue_name)
    [task] = await enqueue(broker, TaskSpec(type="record", queue=queue_name))
    taken, _, _ = await fetch(broker, queue_name, "vanished-worker", 1, 200)
    assert [t.id for t in taken] == [task.task_id]
    await asyncio.sleep(0.5)  # the lease expired; nothing but the scheduler acts on that
    assert (await get_task(broker, task.task_id)).state is TaskState.RUNNING

    scheduler = services.scheduler(redis_url, env=tf_env(tick_s=0.1))

    async def requeued() -> bool:
        return (await get_task(broker, task.task_id)).state is TaskState.QUEUED

    await wait_until(requeued, STEP_TIMEOUT_S, message="not reclaimed", processes=[scheduler])
    record = await get_task(broker, task.task_id)
    assert record.attempts == 1
    abandoned = [e for e in record.events if e.event == "abandoned"]
    assert [e.worker for e in abandoned] == ["vanished-worker"]
    assert await broker.redis.zcard(keys.leases) == 0

    # The vanished worker's late outcome is refused: the task is no longer its own.
    late = Outcome(task.task_id, "succeeded", "null")
    stale = await finish(
        broker, queue_name, "vanished-worker", [late], task_ttl_s=60, dead_ttl_s=60
    )
    assert stale == [task.task_id]
    assert (await get_task(broker, task.task_id)).state is TaskState.QUEUED

    # The next worker gets it as attempt 2.
    again, _, _ = await fetch(broker, queue_name, "next-worker", 1, 60_000)
    assert [(t.id, t.attempts) for t in again] == [(task.task_id, 2)]
    done = Outcome(task.task_id, "succeeded", "null")
    assert (
        await finish(broker, queue_name, "next-worker", [done], task_ttl_s=60, dead_ttl_s=60) == []
    )


def queue_labels(scheduler: ServiceProcess, family: str) -> dict[tuple[str, ...], float]:
    """Samples of ``family`` on the scheduler's /metrics, by label values (queue first)."""
    reply = scheduler.get("/metrics")
    assert reply is not None and reply[0] == 200, reply
    samples: dict[tuple[str, ...], float] = {}
    for metric in text_string_to_metric_families(reply[1]):
        for s in metric.samples:
            if s.name == family:
                rest = [v for k, v in sorted(s.labels.items()) if k != "queue"]
                samples[(s.labels["queue"], *rest)] = s.value
    return samples


async def test_gauges_name_the_busiest_queues_and_sum_the_rest(
    services: ServiceGroup, tmp_path: Path
) -> None:
    depths = {"q5": 5, "q4": 4, "q3": 3, "q2": 2, "q1": 1}
    with RedisServer(dir=tmp_path / "redis") as server:
        broker = Broker.from_url(server.url)
        try:
            for queue, depth in depths.items():
                await enqueue(broker, *(TaskSpec(type="record", queue=queue) for _ in range(depth)))
            env = tf_env(tick_s=0.1, gauge_interval_s=0.2, metrics_max_queues=2)
            scheduler = services.scheduler(server.url, env=env)
            await scheduler.wait_ready()
            want = {("q5", "queued"): 5, ("q4", "queued"): 4, ("_other", "queued"): 6}
            seen: dict[tuple[str, ...], float] = {}

            def queued() -> bool:
                depth = queue_labels(scheduler, "taskforge_queue_depth")
                seen.clear()
                seen.update({k: v for k, v in depth.items() if k[1] == "queued"})
                return seen == want

            await wait_until(
                queued, STEP_TIMEOUT_S, message=lambda: f"{seen}", processes=[scheduler]
            )
            # q1 outgrows q4 and takes its label: q4's series go, nothing grows past 2 + 1.
            await enqueue(broker, *(TaskSpec(type="record", queue="q1") for _ in range(9)))
            want = {("q1", "queued"): 10, ("q5", "queued"): 5, ("_other", "queued"): 9}
            await wait_until(
                queued, STEP_TIMEOUT_S, message=lambda: f"{seen}", processes=[scheduler]
            )
            ages = queue_labels(scheduler, "taskforge_queue_oldest_task_age_seconds")
            assert {k[0] for k in ages} == {"q1", "q5", "_other"}
            events = queue_labels(scheduler, "taskforge_queue_events")
            assert events.get(("_other", "enqueued")) == 4 + 3 + 2, events
        finally:
            await broker.close()


async def test_scheduler_reaps_an_idle_empty_queue(services: ServiceGroup, tmp_path: Path) -> None:
    with RedisServer(dir=tmp_path / "redis") as server:
        broker = Broker.from_url(server.url)
        try:
            await enqueue(broker, TaskSpec(type="record", queue="busy"))
            [done] = await enqueue(broker, TaskSpec(type="record", queue="idle"))
            taken, _, _ = await fetch(broker, "idle", "w", 1, 60_000)
            ok = Outcome(taken[0].id, "succeeded", "null", attempt=taken[0].attempts)
            await finish(broker, "idle", "w", [ok], task_ttl_s=600, dead_ttl_s=600)
            env = tf_env(tick_s=0.1, gauge_interval_s=0.2, queue_idle_ttl_s=1)
            scheduler = services.scheduler(server.url, env=env)
            await scheduler.wait_ready()

            async def reaped() -> bool:
                return set(await broker.queues()) == {"busy"}

            await wait_until(reaped, STEP_TIMEOUT_S, message="not reaped", processes=[scheduler])

            def series_gone() -> bool:
                depth = queue_labels(scheduler, "taskforge_queue_depth")
                return {k[0] for k in depth} == {"busy"}

            await wait_until(series_gone, STEP_TIMEOUT_S, processes=[scheduler])
            assert (await get_task(broker, done.task_id)).state is TaskState.SUCCEEDED
            [again] = await enqueue(broker, TaskSpec(type="record", queue="idle"))
            assert again.created and set(await broker.queues()) == {"busy", "idle"}
        finally:
            await broker.close()


async def test_two_schedulers_reclaim_each_expired_lease_exactly_once(
    services: ServiceGroup, tmp_path: Path
) -> None:
    total, queue = 300, "leased"
    keys = QueueKeys(queue)
    with RedisServer(dir=tmp_path / "redis") as server:
        broker = Broker.from_url(server.url)
        try:
            ids = {
                r.task_id
                for r in await enqueue(
                    broker, *(TaskSpec(type="record", queue=queue) for _ in range(total))
                )
            }
            env = tf_env(tick_s=0.05, batch_size=7, queue_refresh_s=0.1)
            schedulers = [services.scheduler(server.url, env=env) for _ in range(2)]
            for scheduler in schedulers:
                await scheduler.wait_ready()
            # Leases that expire while both schedulers tick, in small batches.
            taken, _, _ = await fetch(broker, queue, "vanished", total, 1000)
            assert {t.id for t in taken} == ids

            async def all_back() -> bool:
                return await broker.redis.zcard(keys.leases) == 0

            await wait_until(all_back, STEP_TIMEOUT_S, processes=schedulers)
            async with broker.redis.pipeline(transaction=False) as pipe:
                for task_id in sorted(ids):
                    pipe.lrange(keys.events(task_id), 0, -1)
                    pipe.hget(keys.task(task_id), "state")
                replies = await pipe.execute()
            entries = await broker.redis.xrange(keys.stream)
            counters = await broker.redis.hgetall(keys.counters)
        finally:
            await broker.close()
    abandoned = Counter(sum('"abandoned"' in e for e in events) for events in replies[0::2])
    assert abandoned == {1: total}, abandoned
    assert set(replies[1::2]) == {"queued"}
    assert int(counters["abandoned"]) == total
    # One ready entry per task: none was pushed back twice.
    streamed = Counter(fields["id"] for _, fields in entries)
    assert set(streamed) == ids and max(streamed.values()) == 1
    reclaimed = [s.metric("taskforge_scheduler_reclaimed_total", queue=queue) for s in schedulers]
    assert sum(v or 0 for v in reclaimed) == total, reclaimed
