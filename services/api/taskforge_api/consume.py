"""``consume-once``: one task through exactly the lifecycle a worker gives it.

Same fetch script (lease, attempt count), same :func:`taskforge.execution.execute` (handler,
timeout, retry decision), same finish script (retry, DLQ, TTL), with its lease heartbeated
while the handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from taskforge.broker import Broker, FetchedTask, Outcome
from taskforge.broker.admin import get_task
from taskforge.broker.consume import fetch, finish, heartbeat
from taskforge.errors import RedisUnavailable
from taskforge.execution import ExecutionEnv, execute
from taskforge.ids import queue_of
from taskforge.middleware import MiddlewareChain, default_middleware
from taskforge.settings import ApiSettings
from taskforge_api.schemas import ConsumeOnceResult

log = logging.getLogger(__name__)

#: Worker id under which consume-once attempts run, visible in task records.
CONSUMER_ID = f"api-{socket.gethostname()}-{os.getpid()}"


async def _watch_lease(
    broker: Broker, task: FetchedTask, lease_ms: int, attempt: asyncio.Task[Outcome]
) -> str:
    """Heartbeat until the attempt ends; stop it when its lease is lost or a cancel arrives.

    Returns ``lost`` or ``cancel`` when it stopped the attempt (it is cancelled otherwise).
    """
    while True:
        await asyncio.sleep(lease_ms / 3000)
        try:
            lost, cancel = await heartbeat(broker, task.queue, CONSUMER_ID, [task.id], lease_ms)
        except RedisUnavailable as exc:
            log.warning("consume-once heartbeat failed, retrying: %s", exc)
            continue
        if lost or cancel:
            attempt.cancel()
            return "lost" if lost else "cancel"


async def _fetch_one(broker: Broker, queue: str, lease_ms: int) -> FetchedTask | None:
    """The next task of ``queue``, skipping entries of cancelled tasks; None when empty."""
    while True:
        tasks, delivered, _ = await fetch(broker, queue, CONSUMER_ID, 1, lease_ms)
        if tasks:
            return tasks[0]
        if not delivered:
            return None


async def consume_once(
    broker: Broker, settings: ApiSettings, env: ExecutionEnv, queue: str
) -> ConsumeOnceResult:
    """Fetch one task of ``queue``, run it, record its outcome; empty queue → nothing."""
    await broker.ensure_queue(queue)
    lease_ms = int(settings.lease_s * 1000)
    task = await _fetch_one(broker, queue, lease_ms)
    if task is None:
        return ConsumeOnceResult(task_id=None, outcome=None, task=None)
    chain = MiddlewareChain(default_middleware())
    started = chain.before(task)
    attempt = asyncio.create_task(execute(task, env))
    watcher = asyncio.create_task(_watch_lease(broker, task, lease_ms, attempt))
    outcome: Outcome | None
    try:
        outcome = await attempt
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            # The client went away mid-attempt: give the task back instead of losing it.
            await _record(broker, settings, Outcome(task.id, "giveback", attempt=task.attempts))
            raise
        stopped_for = watcher.result() if watcher.done() and not watcher.cancelled() else "lost"
        outcome = None
        if stopped_for == "cancel":
            outcome = Outcome(
                task.id, "cancelled", "cancelled while running", attempt=task.attempts
            )
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
    if outcome is None:  # the lease was lost: the task's new owner records it
        return ConsumeOnceResult(
            task_id=task.id, outcome="lost", task=await get_task(broker, task.id)
        )
    chain.after(task, outcome, started)
    stale = await _record(broker, settings, outcome)
    return ConsumeOnceResult(
        task_id=task.id,
        outcome="lost" if stale else outcome.kind,
        task=await get_task(broker, task.id),
    )


async def _record(broker: Broker, settings: ApiSettings, outcome: Outcome) -> bool:
    stale = await finish(
        broker,
        queue_of(outcome.task_id),
        CONSUMER_ID,
        [outcome],
        task_ttl_s=settings.task_ttl_s,
        dead_ttl_s=settings.dead_ttl_s,
    )
    return bool(stale)
