"""``consume-once``: one task through exactly the lifecycle a worker gives it.

Same fetch script (lease, attempt count), same :func:`taskforge.execution.execute` (handler,
timeout, retry decision), same finish script (retry, DLQ, TTL), with its lease heartbeated
while the handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from taskforge.broker import Broker, FetchedTask, Outcome
from taskforge.broker.admin import get_task
from taskforge.broker.consume import fetch, finish, heartbeat
from taskforge.execution import ExecutionEnv, execute
from taskforge.middleware import MiddlewareChain, default_middleware
from taskforge.settings import ApiSettings
from taskforge_api.schemas import ConsumeOnceResult

#: Worker id under which consume-once attempts run, visible in task records.
CONSUMER_ID = f"api-{socket.gethostname()}-{os.getpid()}"


async def _keep_leased(broker: Broker, task: FetchedTask, lease_ms: int) -> None:
    while True:
        await asyncio.sleep(lease_ms / 3000)
        await heartbeat(broker, task.queue, CONSUMER_ID, [task.id], lease_ms)


async def consume_once(
    broker: Broker, settings: ApiSettings, env: ExecutionEnv, queue: str
) -> ConsumeOnceResult:
    """Fetch one task of ``queue``, run it, record its outcome; empty queue → nothing."""
    await broker.ensure_queue(queue)
    lease_ms = int(settings.lease_s * 1000)
    tasks, _, _ = await fetch(broker, queue, CONSUMER_ID, 1, lease_ms)
    if not tasks:
        return ConsumeOnceResult(task_id=None, outcome=None, task=None)
    task = tasks[0]
    chain = MiddlewareChain(default_middleware())
    started = chain.before(task)
    beating = asyncio.create_task(_keep_leased(broker, task, lease_ms))
    try:
        outcome = await execute(task, env)
    except asyncio.CancelledError:
        # The client went away mid-attempt: give the task back instead of losing it.
        outcome = Outcome(task.id, "giveback", attempt=task.attempts)
        await _record(broker, settings, task, outcome)
        raise
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    chain.after(task, outcome, started)
    stale = await _record(broker, settings, task, outcome)
    return ConsumeOnceResult(
        task_id=task.id,
        outcome="lost" if stale else outcome.kind,
        task=await get_task(broker, task.id),
    )


async def _record(
    broker: Broker, settings: ApiSettings, task: FetchedTask, outcome: Outcome
) -> bool:
    stale = await finish(
        broker,
        task.queue,
        CONSUMER_ID,
        [outcome],
        task_ttl_s=settings.task_ttl_s,
        dead_ttl_s=settings.dead_ttl_s,
    )
    return bool(stale)
