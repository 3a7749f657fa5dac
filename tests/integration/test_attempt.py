"""The one attempt lifecycle (taskforge.attempt) and consume-once on it, against real Redis.

The worker's side of the same lifecycle (cancel while running, shutdown give-back, lost
leases) is exercised in test_worker_inprocess.py; here each stop reason is checked on the
shared piece itself, and consume-once's own paths (client gone, lease lost) end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from taskforge.attempt import Attempt, StopReason, watch_lease
from taskforge.broker import Broker, Outcome
from taskforge.broker.admin import cancel_task, get_task
from taskforge.broker.consume import fetch
from taskforge.execution import ExecutionEnv
from taskforge.handlers import Registry, TaskContext
from taskforge.keys import QueueKeys
from taskforge.middleware import Middleware, MiddlewareChain
from taskforge.models import TaskSpec, TaskState
from taskforge.settings import ApiSettings
from taskforge.settings.handlers import HandlerSettings
from taskforge_api.consume import CONSUMER_ID, consume_once
from tests.integration.conftest import enqueue

LEASE_MS = 1500


class Recorder(Middleware):
    """Remembers which outcomes the after-hook saw."""

    def __init__(self) -> None:
        self.after: list[str] = []

    def after_task(self, task: Any, outcome: Outcome, duration_s: float) -> None:
        self.after.append(outcome.kind)


@pytest.fixture
async def env(redis_url: str) -> AsyncIterator[ExecutionEnv]:
    reg = Registry()

    @reg.handler("echo")
    async def echo(payload: Any, ctx: TaskContext) -> Any:
        return payload

    @reg.handler("sleepy")
    async def sleepy(payload: Any, ctx: TaskContext) -> None:
        await asyncio.sleep(payload["s"])

    settings = HandlerSettings(redis_url=redis_url, env="dev")
    async with httpx.AsyncClient() as http:
        yield ExecutionEnv(reg, settings, http)


async def started(broker: Broker, queue: str, spec: TaskSpec) -> Attempt:
    await enqueue(broker, spec)
    (task,), _, _ = await fetch(broker, queue, "w", 1, LEASE_MS)
    return Attempt(task)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("reason", "kind"), [("cancel", "cancelled"), ("shutdown", "giveback"), ("lost", None)]
)
async def test_each_stop_reason_leaves_its_outcome_and_tells_the_runner_once(
    broker: Broker, env: ExecutionEnv, queue_name: str, reason: StopReason, kind: str | None
) -> None:
    attempt = await started(
        broker, queue_name, TaskSpec(type="sleepy", queue=queue_name, payload={"s": 30})
    )
    told: list[Outcome | None] = []
    recorder = Recorder()
    attempt.handle = asyncio.create_task(
        attempt.run(env, MiddlewareChain([recorder]), lambda a, o: told.append(o))
    )
    await asyncio.sleep(0.05)
    attempt.interrupt(reason)
    attempt.interrupt("cancel")  # a second reason does not replace the first
    outcome = await asyncio.wait_for(attempt.handle, 5)
    assert (outcome.kind if outcome else None) == kind
    assert told == [outcome]
    assert recorder.after == ([] if kind is None else [kind])  # no after-hook without outcome
    attempt.give_up_waiting(lambda a, o: told.append(o))
    assert told == [outcome], "a settled attempt is never told again"


async def test_a_cancellation_from_outside_propagates_after_letting_go(
    broker: Broker, env: ExecutionEnv, queue_name: str
) -> None:
    attempt = await started(
        broker, queue_name, TaskSpec(type="sleepy", queue=queue_name, payload={"s": 30})
    )
    told: list[Outcome | None] = []
    attempt.handle = asyncio.create_task(
        attempt.run(env, MiddlewareChain([]), lambda a, o: told.append(o))
    )
    await asyncio.sleep(0.05)
    attempt.handle.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt.handle
    assert told == [None]


async def test_watch_lease_extends_the_lease_then_stops_on_cancel_and_on_loss(
    broker: Broker, env: ExecutionEnv, queue_name: str
) -> None:
    keys = QueueKeys(queue_name)
    spec = TaskSpec(type="sleepy", queue=queue_name, payload={"s": 30})
    for stop in ("cancel", "lost"):
        attempt = await started(broker, queue_name, spec)
        attempt.handle = asyncio.create_task(attempt.run(env, MiddlewareChain([])))
        watcher = asyncio.create_task(watch_lease(broker, attempt, "w", LEASE_MS, 0.1))
        first = await broker.redis.zscore(keys.leases, attempt.task.id)

        async def extended() -> bool:
            return (await broker.redis.zscore(keys.leases, attempt.task.id) or 0) > (first or 0)

        await until(extended)
        if stop == "cancel":
            await cancel_task(broker, attempt.task.id, task_ttl_s=60)
        else:
            await broker.redis.zrem(keys.leases, attempt.task.id)
        outcome = await asyncio.wait_for(attempt.handle, 5)
        watcher.cancel()
        assert attempt.stop_reason == stop
        assert (outcome.kind if outcome else None) == ("cancelled" if stop == "cancel" else None)


def api_settings(redis_url: str) -> ApiSettings:
    return ApiSettings(redis_url=redis_url, env="dev", lease_s=1.5, internal_token="t" * 32)


async def test_consume_once_gives_the_task_back_when_its_caller_goes_away(
    broker: Broker, env: ExecutionEnv, redis_url: str, queue_name: str
) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="sleepy", queue=queue_name, payload={"s": 30}))
    consuming = asyncio.create_task(consume_once(broker, api_settings(redis_url), env, queue_name))

    async def running() -> bool:
        return (await get_task(broker, res.task_id)).state is TaskState.RUNNING

    await until(running)
    consuming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consuming
    record = await get_task(broker, res.task_id)
    assert (record.state, record.attempts) == (TaskState.QUEUED, 0)
    assert record.events[-1].event == "returned" and record.events[-1].worker == CONSUMER_ID
    assert await broker.redis.zscore(QueueKeys(queue_name).leases, res.task_id) is None


async def test_consume_once_reports_a_lost_lease_and_records_nothing(
    broker: Broker, env: ExecutionEnv, redis_url: str, queue_name: str
) -> None:
    (res,) = await enqueue(broker, TaskSpec(type="sleepy", queue=queue_name, payload={"s": 30}))
    consuming = asyncio.create_task(consume_once(broker, api_settings(redis_url), env, queue_name))

    async def running() -> bool:
        return (await get_task(broker, res.task_id)).state is TaskState.RUNNING

    await until(running)
    await broker.redis.zrem(QueueKeys(queue_name).leases, res.task_id)
    result = await asyncio.wait_for(consuming, 10)
    assert (result.task_id, result.outcome) == (res.task_id, "lost")
    assert result.task is not None and result.task.state is TaskState.RUNNING  # nothing recorded


@pytest.mark.parametrize(("reason", "kind"), [("shutdown", "giveback"), ("lost", None)])
async def test_an_attempt_interrupted_before_its_first_step_still_tells_the_runner(
    broker: Broker, env: ExecutionEnv, queue_name: str, reason: StopReason, kind: str | None
) -> None:
    """A heartbeat can stop an attempt right after the fetch started it: its coroutine, cancelled
    before it ever ran, cannot tell the runner itself, and the worker would hold it forever."""
    attempt = await started(broker, queue_name, TaskSpec(type="echo", queue=queue_name))
    told: list[Outcome | None] = []
    attempt.start(env, MiddlewareChain([]), lambda a, o: told.append(o))
    attempt.interrupt(reason)  # before the event loop ran the attempt at all
    assert attempt.handle is not None
    with pytest.raises(asyncio.CancelledError):
        await attempt.handle
    assert [o.kind if o else None for o in told] == [kind]
