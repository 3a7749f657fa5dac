"""The queue limit, the name pattern and the reaping of idle queues, against a private Redis.

A private server per module: these tests count every queue in the registry, which the session
server shares with every other test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskforge.broker import Broker, Outcome
from taskforge.broker.admin import get_task
from taskforge.broker.consume import fetch, finish
from taskforge.broker.registry import reap_queues, unmark_idle, unregister
from taskforge.errors import QueueLimitReached, QueueNotAllowed
from taskforge.keys import QUEUES_REGISTRY, QueueKeys, QueuePolicy
from taskforge.models import TaskSpec, TaskState
from taskforge.scripts import Scripts
from tests.integration.conftest import enqueue
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(dir=Path(tmp_path_factory.mktemp("queue-limits"))) as server:
        yield server


@pytest.fixture
async def limited(private_redis: RedisServer) -> AsyncIterator[Broker]:
    """A broker on an empty private Redis allowing 3 queues."""
    broker = Broker.from_url(private_redis.url, policy=QueuePolicy(max_queues=3))
    await broker.redis.flushall()
    try:
        yield broker
    finally:
        await broker.close()


def task(queue: str, **options: object) -> TaskSpec:
    return TaskSpec(type="echo", queue=queue, **options)  # type: ignore[arg-type]


async def registry(broker: Broker) -> set[str]:
    return set(await broker.redis.smembers(QUEUES_REGISTRY))


async def drain(broker: Broker, queue: str) -> None:
    """Run every ready task of ``queue`` to success."""
    tasks, _, _ = await fetch(broker, queue, "w", 100, 30_000)
    outcomes = [Outcome(t.id, "succeeded", "null", attempt=t.attempts) for t in tasks]
    await finish(broker, queue, "w", outcomes, task_ttl_s=60, dead_ttl_s=60)


async def test_new_queue_past_the_limit_is_refused_and_writes_nothing(limited: Broker) -> None:
    for queue in ("a", "b", "c"):
        await enqueue(limited, task(queue))
    with pytest.raises(QueueLimitReached, match=r"cannot create queue\(s\) d: 3 queues exist"):
        await enqueue(limited, task("d"))
    assert await registry(limited) == {"a", "b", "c"}
    keys = QueueKeys("d")
    assert await limited.redis.exists(keys.stream, keys.meta, keys.counters) == 0
    # A queue that exists is always accepted, whatever the count.
    (again,) = await enqueue(limited, task("a"))
    assert again.created
    assert await limited.redis.xlen(QueueKeys("a").stream) == 2


async def test_batch_with_one_new_queue_too_many_changes_nothing(limited: Broker) -> None:
    await enqueue(limited, task("a"), task("b"))
    with pytest.raises(QueueLimitReached, match="c, d"):
        await enqueue(limited, task("a"), task("c"), task("d"))
    assert await registry(limited) == {"a", "b"}
    assert await limited.redis.xlen(QueueKeys("a").stream) == 1
    assert await limited.redis.exists(QueueKeys("c").meta, QueueKeys("d").meta) == 0
    results = await enqueue(limited, task("a"), task("c"))
    assert [r.created for r in results] == [True, True]
    assert await registry(limited) == {"a", "b", "c"}


async def test_concurrent_new_queues_never_overshoot_the_limit(limited: Broker) -> None:
    outcomes = await asyncio.gather(
        *(enqueue(limited, task(f"q{i}")) for i in range(20)), return_exceptions=True
    )
    accepted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, QueueLimitReached)]
    assert (len(accepted), len(refused)) == (3, 17), outcomes
    live = await registry(limited)
    assert len(live) == 3
    for queue in live:
        assert await limited.redis.xlen(QueueKeys(queue).stream) == 1


async def test_pattern_and_reserved_name_are_refused(private_redis: RedisServer) -> None:
    broker = Broker.from_url(private_redis.url, policy=QueuePolicy(pattern=r"tenant-[a-z]+"))
    try:
        await broker.redis.flushall()
        (ok,) = await enqueue(broker, task("tenant-acme"))
        assert ok.created
        with pytest.raises(QueueNotAllowed, match="must match"):
            await enqueue(broker, task("tenant-acme"), task("tenant-acme2"))
        with pytest.raises(QueueNotAllowed, match="reserved"):
            await enqueue(broker, task("_other"))
        assert await registry(broker) == {"tenant-acme"}
        assert await broker.redis.xlen(QueueKeys("tenant-acme").stream) == 1
    finally:
        await broker.close()


async def test_idle_empty_queue_is_reaped_and_comes_back(limited: Broker) -> None:
    (done,) = await enqueue(limited, task("a"))
    await enqueue(limited, task("b"), task("c"))
    await enqueue(limited, task("c", delay_s=3600))
    await drain(limited, "a")
    await drain(limited, "b")
    # Not idle long enough: nothing goes.
    assert await reap_queues(limited, ["a", "b", "c"], idle_s=3600) == []
    # a and b are empty; c still holds a scheduled task (and one ready).
    assert await reap_queues(limited, ["a", "b", "c"], idle_s=0) == ["a", "b"]
    assert await registry(limited) == {"c"}
    assert (await get_task(limited, done.task_id)).state is TaskState.SUCCEEDED
    # The freed places take new queues, and a reaped queue registers again on its next task.
    await enqueue(limited, task("d"), task("a"))
    assert await registry(limited) == {"a", "c", "d"}
    assert (await limited.redis.hgetall(QueueKeys("a").counters)) == {"enqueued": "1"}


async def test_enqueue_between_unmark_and_unregister_keeps_the_queue(limited: Broker) -> None:
    (old,) = await enqueue(limited, task("q"))
    await drain(limited, "q")
    assert await unmark_idle(limited, ["q"], idle_s=0) == ["q"]
    # The enqueue finds no marker, registers (the name is still there), marks, writes.
    (new,) = await enqueue(limited, task("q"))
    assert await unregister(limited, ["q"]) == []
    assert await registry(limited) == {"q"}
    assert (await get_task(limited, new.task_id)).state is TaskState.QUEUED
    assert old.task_id != new.task_id


async def test_reap_between_register_and_mark_is_undone_by_the_enqueue(
    limited: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first,) = await enqueue(limited, task("q"))
    await drain(limited, "q")
    await unmark_idle(limited, ["q"], idle_s=0)  # an older reap, left half done
    original = Scripts.run
    reaped: list[list[str]] = []

    async def reap_after_register(
        self: Scripts, name: str, keys: list[str], args: list[Any]
    ) -> Any:
        reply = await original(self, name, keys, args)
        if name == "register_queues" and not reaped:
            # A scheduler finishes reaping right after this enqueue found the name registered.
            reaped.append(await unregister(limited, ["q"]))
        return reply

    monkeypatch.setattr(Scripts, "run", reap_after_register)
    (second,) = await enqueue(limited, task("q"))
    assert reaped == [["q"]]
    assert await registry(limited) == {"q"}
    assert await limited.redis.xlen(QueueKeys("q").stream) == 1
    assert second.task_id != first.task_id


async def test_empty_queue_without_marker_is_reaped_at_once(limited: Broker) -> None:
    # A queue registered before markers existed: registry member, stream, no marker.
    await limited.redis.sadd(QUEUES_REGISTRY, "old")
    await limited.create_groups(["old"])
    assert await reap_queues(limited, ["old"], idle_s=3600) == ["old"]
    assert await registry(limited) == set()
    (res,) = await enqueue(limited, task("old"))
    assert res.created and await registry(limited) == {"old"}


async def test_worker_queues_do_not_take_places_under_the_limit(limited: Broker) -> None:
    # A worker (or consume-once) prepares its queues' streams without registering them.
    for queue in ("w1", "w2", "w3", "w4"):
        await limited.ensure_queue(queue)
    assert await registry(limited) == set()
    assert await enqueue(limited, task("w1"), task("a"), task("b"))
    assert await registry(limited) == {"w1", "a", "b"}
    with pytest.raises(QueueLimitReached):
        await enqueue(limited, task("w2"))
