"""The worker engine in this process, against a real Redis: outcomes, retries, cancel, stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from taskforge.broker import Broker, FetchedTask, Outcome
from taskforge.broker.admin import cancel_task, get_task
from taskforge.handlers import Registry, TaskContext
from taskforge.middleware import Middleware
from taskforge.models import DeadReason, TaskSpec, TaskState
from taskforge.retry import Retry
from taskforge.settings import SchedulerSettings, WorkerSettings
from taskforge_scheduler.loop import Scheduler
from taskforge_worker.runtime import Worker
from tests.integration.conftest import enqueue


def worker_settings(redis_url: str, queue: str, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "env": "dev",
        "queues": [queue],
        "concurrency": 8,
        "lease_s": 5,
        "heartbeat_interval_s": 0.2,
        "block_ms": 100,
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.1,
        "max_retries": 2,
    }
    values.update(overrides)
    return WorkerSettings(**values)


@asynccontextmanager
async def running(worker: Worker, redis_url: str) -> AsyncIterator[Worker]:
    """Run ``worker`` and a scheduler (for retries) in the background; stop both after."""
    scheduler = Scheduler(
        SchedulerSettings(redis_url=redis_url, env="dev", tick_s=0.05, queue_refresh_s=0.05)
    )
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(scheduler.run())]
    try:
        yield worker
    finally:
        worker.request_stop()
        scheduler.request_stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.02)


async def state_of(broker: Broker, task_id: str) -> TaskState:
    return (await get_task(broker, task_id)).state


async def wait_state(broker: Broker, task_id: str, state: TaskState) -> None:
    async def reached() -> bool:
        return await state_of(broker, task_id) is state

    await until(reached)


@pytest.fixture
def registry() -> Registry:
    reg = Registry()

    @reg.handler("echo")
    async def echo(payload: Any, ctx: TaskContext) -> Any:
        return payload

    @reg.handler("flaky")
    async def flaky(payload: Any, ctx: TaskContext) -> int:
        if ctx.attempt <= payload["fail_times"]:
            raise RuntimeError(f"flaky attempt {ctx.attempt}")
        return ctx.attempt

    @reg.handler("sleepy")
    async def sleepy(payload: Any, ctx: TaskContext) -> None:
        await asyncio.sleep(payload["s"])

    @reg.handler("threaded")
    def threaded(payload: Any, ctx: TaskContext) -> str:
        return threading.current_thread().name

    @reg.handler("later", max_retries=1)
    async def later(payload: Any, ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise Retry("not yet", delay_s=0.05)
        return "done"

    return reg


async def test_runs_tasks_in_burst_mode(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    results = await enqueue(
        broker, *[TaskSpec(type="echo", queue=queue_name, payload=i) for i in range(300)]
    )
    worker = Worker(worker_settings(redis_url, queue_name), registry)
    await asyncio.wait_for(worker.run(burst=True), 30)
    records = [await get_task(broker, r.task_id) for r in results[::37]]
    assert all(r.state is TaskState.SUCCEEDED for r in records)
    assert [r.result for r in records] == [i for i in range(0, 300, 37)]


async def test_retry_until_success_and_until_dead(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    ok, dead = await enqueue(
        broker,
        TaskSpec(type="flaky", queue=queue_name, payload={"fail_times": 2}),
        TaskSpec(type="flaky", queue=queue_name, payload={"fail_times": 9}, max_retries=1),
    )
    async with running(Worker(worker_settings(redis_url, queue_name), registry), redis_url):
        await wait_state(broker, ok.task_id, TaskState.SUCCEEDED)
        await wait_state(broker, dead.task_id, TaskState.DEAD)
    ok_record = await get_task(broker, ok.task_id)
    assert ok_record.attempts == 3 and ok_record.result == 3
    dead_record = await get_task(broker, dead.task_id)
    assert dead_record.attempts == 2
    assert dead_record.dead_reason is DeadReason.RETRIES_EXHAUSTED
    assert dead_record.last_error and "flaky attempt 2" in dead_record.last_error
    assert dead_record.traceback and "RuntimeError" in dead_record.traceback


async def test_explicit_retry_and_handler_defaults(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="later", queue=queue_name))
    async with running(Worker(worker_settings(redis_url, queue_name), registry), redis_url):
        await wait_state(broker, res.task_id, TaskState.SUCCEEDED)
    record = await get_task(broker, res.task_id)
    assert record.attempts == 2 and record.result == "done"
    assert any(e.event == "retry_scheduled" for e in record.events)


async def test_unknown_type_goes_to_dlq_without_retry(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    (res,) = await enqueue(
        broker, TaskSpec(type="nobody-handles-this", queue=queue_name, max_retries=5)
    )
    async with running(Worker(worker_settings(redis_url, queue_name), registry), redis_url):
        await wait_state(broker, res.task_id, TaskState.DEAD)
    record = await get_task(broker, res.task_id)
    assert record.dead_reason is DeadReason.UNKNOWN_TASK_TYPE and record.attempts == 1
    assert "nobody-handles-this" in (record.last_error or "")


async def test_timeout_ends_timed_out(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    (res,) = await enqueue(
        broker,
        TaskSpec(type="sleepy", queue=queue_name, payload={"s": 5}, timeout_s=0.1, max_retries=1),
    )
    async with running(Worker(worker_settings(redis_url, queue_name), registry), redis_url):
        await wait_state(broker, res.task_id, TaskState.DEAD)
    record = await get_task(broker, res.task_id)
    assert record.dead_reason is DeadReason.TIMED_OUT and record.attempts == 2
    assert "timed out" in (record.last_error or "")


async def test_sync_handler_runs_in_thread_pool(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="threaded", queue=queue_name))
    await asyncio.wait_for(
        Worker(worker_settings(redis_url, queue_name), registry).run(burst=True), 30
    )
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.SUCCEEDED and str(record.result).startswith("handler")


async def test_cancel_running_task(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="sleepy", queue=queue_name, payload={"s": 30}))
    async with running(Worker(worker_settings(redis_url, queue_name), registry), redis_url):
        await wait_state(broker, res.task_id, TaskState.RUNNING)
        assert await cancel_task(broker, res.task_id, task_ttl_s=60) == "cancel_requested"
        await wait_state(broker, res.task_id, TaskState.CANCELLED)
    record = await get_task(broker, res.task_id)
    assert record.attempts == 1 and record.events[-1].event == "cancelled"


async def test_stop_gives_back_unfinished_without_spending_attempt(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    quick, slow = await enqueue(
        broker,
        TaskSpec(type="sleepy", queue=queue_name, payload={"s": 0.2}),
        TaskSpec(type="sleepy", queue=queue_name, payload={"s": 60}),
    )
    worker = Worker(worker_settings(redis_url, queue_name, shutdown_grace_s=1), registry)
    run = asyncio.create_task(worker.run())
    await wait_state(broker, slow.task_id, TaskState.RUNNING)
    await wait_state(broker, quick.task_id, TaskState.RUNNING)
    worker.request_stop()
    await asyncio.wait_for(run, 15)
    assert await state_of(broker, quick.task_id) is TaskState.SUCCEEDED
    record = await get_task(broker, slow.task_id)
    assert record.state is TaskState.QUEUED and record.attempts == 0
    assert record.events[-1].event == "returned"


class Recording(Middleware):
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    def before_task(self, task: FetchedTask) -> None:
        self.log.append(f"before:{self.name}")
        if self.fail:
            raise RuntimeError("broken hook")

    def after_task(self, task: FetchedTask, outcome: Outcome, duration_s: float) -> None:
        self.log.append(f"after:{self.name}:{outcome.kind}")
        if self.fail:
            raise RuntimeError("broken hook")


async def test_middleware_order_and_failing_hook_keeps_task(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    calls: list[str] = []
    middleware: list[Middleware] = [Recording("a", calls), Recording("b", calls, fail=True)]
    (res,) = await enqueue(broker, TaskSpec(type="echo", queue=queue_name, payload=1))
    worker = Worker(worker_settings(redis_url, queue_name), registry, middleware=middleware)
    await asyncio.wait_for(worker.run(burst=True), 30)
    assert calls == ["before:a", "before:b", "after:b:succeeded", "after:a:succeeded"]
    assert await state_of(broker, res.task_id) is TaskState.SUCCEEDED


async def test_undecodable_error_text_does_not_sink_the_batch(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    @registry.handler("mojibake", max_retries=0)
    async def mojibake(payload: Any, ctx: TaskContext) -> None:
        raise ValueError(b"bad name \xff".decode("utf-8", "surrogateescape"))

    bad, *good = await enqueue(
        broker,
        TaskSpec(type="mojibake", queue=queue_name),
        *[TaskSpec(type="echo", queue=queue_name, payload=i) for i in range(3)],
    )
    await asyncio.wait_for(
        Worker(worker_settings(redis_url, queue_name), registry).run(burst=True), 30
    )
    record = await get_task(broker, bad.task_id)
    assert record.state is TaskState.DEAD
    assert record.last_error is not None and "\\udcff" in record.last_error
    assert all([await state_of(broker, g.task_id) is TaskState.SUCCEEDED for g in good])


async def test_hung_sync_handler_does_not_time_out_tasks_that_never_ran(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    @registry.handler("stuck", max_retries=0)
    def stuck(payload: Any, ctx: TaskContext) -> None:
        time.sleep(1.0)

    hung, quick = await enqueue(
        broker,
        TaskSpec(type="stuck", queue=queue_name, timeout_s=0.2),
        TaskSpec(type="threaded", queue=queue_name, timeout_s=0.5),
    )
    settings = worker_settings(redis_url, queue_name, sync_threads=1)
    async with running(Worker(settings, registry), redis_url):
        await wait_state(broker, quick.task_id, TaskState.SUCCEEDED)
    assert (await get_task(broker, hung.task_id)).dead_reason is DeadReason.TIMED_OUT


async def test_handler_ignoring_cancellation_cannot_hang_shutdown(
    broker: Broker, redis_url: str, queue_name: str, registry: Registry
) -> None:
    @registry.handler("stubborn")
    async def stubborn(payload: Any, ctx: TaskContext) -> None:
        for _ in range(3):  # swallows two cancellations, then lets the third through
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                continue

    (res,) = await enqueue(broker, TaskSpec(type="stubborn", queue=queue_name))
    worker = Worker(worker_settings(redis_url, queue_name, shutdown_grace_s=0.2), registry)
    run = asyncio.create_task(worker.run())
    await wait_state(broker, res.task_id, TaskState.RUNNING)
    worker.request_stop()
    await asyncio.wait_for(run, 20)
    record = await get_task(broker, res.task_id)
    assert record.state is TaskState.QUEUED
    assert record.attempts == 0
    leftovers = [t for t in asyncio.all_tasks() if t.get_name() == res.task_id]
    for _ in range(2):  # let the test's loop close: the handler swallows one more cancel
        for task in leftovers:
            task.cancel()
        await asyncio.sleep(0)
    await asyncio.wait(leftovers, timeout=5)
