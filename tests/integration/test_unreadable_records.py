"""Records the worker cannot read back end dead, with reason ``unreadable_record``.

Each record is damaged (or written whole) straight into Redis, as a bug, an older version or
a hand edit would leave it; the in-process worker must dead-letter it at once instead of
letting its lease lapse until it is ``abandoned``, and the batch it came in must not suffer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskforge.broker import Broker
from taskforge.broker import fields as F
from taskforge.broker.admin import get_task
from taskforge.handlers import Registry, TaskContext
from taskforge.keys import QueueKeys
from taskforge.models import DeadReason, TaskSpec, TaskState
from taskforge_worker.runtime import Worker
from tests.integration.conftest import enqueue
from tests.integration.test_worker_inprocess import worker_settings


@pytest.fixture
def registry() -> Registry:
    reg = Registry()

    @reg.handler("echo")
    async def echo(payload: Any, ctx: TaskContext) -> Any:
        return payload

    @reg.handler("boom")
    async def boom(payload: Any, ctx: TaskContext) -> None:
        raise RuntimeError("handler failed")

    return reg


async def run_burst(redis_url: str, queue: str, registry: Registry) -> None:
    await asyncio.wait_for(Worker(worker_settings(redis_url, queue), registry).run(burst=True), 30)


@pytest.mark.parametrize(
    ("task_type", "field", "stored", "says"),
    [
        ("echo", F.PAYLOAD, "{not json", "stored payload unreadable"),
        ("echo", F.MAX_RETRIES, "five", "stored max_retries or timeout_s unreadable"),
        ("echo", F.TIMEOUT_S, "soon", "stored max_retries or timeout_s unreadable"),
        ("boom", F.BACKOFF, '{"kind": "sideways"}', "stored backoff unreadable"),
    ],
)
async def test_a_damaged_field_dead_letters_the_task_and_spares_its_batch(
    broker: Broker,
    redis_url: str,
    queue_name: str,
    registry: Registry,
    task_type: str,
    field: str,
    stored: str,
    says: str,
) -> None:
    damaged, healthy = await enqueue(
        broker,
        TaskSpec(type=task_type, queue=queue_name, payload={"n": 1}),
        TaskSpec(type="echo", queue=queue_name, payload={"n": 2}),
    )
    await broker.redis.hset(QueueKeys(queue_name).task(damaged.task_id), field, stored)
    await run_burst(redis_url, queue_name, registry)
    record = await get_task(broker, damaged.task_id)
    assert record.state is TaskState.DEAD
    assert record.dead_reason is DeadReason.UNREADABLE_RECORD
    assert record.last_error is not None and record.last_error.startswith(says)
    assert record.attempts == 1
    if task_type == "boom":  # the attempt ran and failed: its own error is kept too
        assert "handler failed" in record.last_error
    other = await get_task(broker, healthy.task_id)
    assert (other.state, other.result) == (TaskState.SUCCEEDED, {"n": 2})


async def test_a_record_written_whole_into_redis_with_bad_json_is_dead_lettered(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    keys = QueueKeys(queue_name)
    task_id = f"{queue_name}.{'0' * 31}1"
    await broker.ensure_queue(queue_name)
    await broker.redis.hset(
        keys.task(task_id),
        mapping={
            F.ID: task_id,
            F.TYPE: "echo",
            F.PAYLOAD: "[1, 2",
            F.ATTEMPTS: 0,
            F.STATE: "queued",
        },
    )
    msg = await broker.redis.xadd(keys.stream, {"id": task_id})
    await broker.redis.hset(keys.task(task_id), F.MSG, msg)
    await run_burst(redis_url, queue_name, registry)
    record = await get_task(broker, task_id)
    assert (record.state, record.dead_reason) == (TaskState.DEAD, DeadReason.UNREADABLE_RECORD)
    assert [e.event for e in record.events][-3:] == ["started", "failed", "dead"]
    assert await broker.redis.zscore(keys.dead, task_id) is not None
    assert await broker.redis.zscore(keys.leases, task_id) is None
