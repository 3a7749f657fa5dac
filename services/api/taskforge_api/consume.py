"""``consume-once``: one task through exactly the lifecycle a worker gives it.

Same fetch script (lease, attempt count), the same attempt as the worker's
(:class:`taskforge.attempt.Attempt`: middleware, execute, cancel / lost lease / give-back
outcomes), same finish script (retry, DLQ, TTL), with its lease heartbeated while the handler
runs (:func:`taskforge.attempt.watch_lease`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from taskforge.attempt import STOP_TIMEOUT_S, Attempt, watch_lease
from taskforge.broker import Broker, FetchedTask, Outcome
from taskforge.broker.admin import get_task
from taskforge.broker.consume import fetch, finish
from taskforge.execution import ExecutionEnv
from taskforge.ids import queue_of
from taskforge.middleware import MiddlewareChain, default_middleware
from taskforge.settings import ApiSettings
from taskforge_api.schemas import ConsumeOnceResult

#: Worker id under which consume-once attempts run, visible in task records.
CONSUMER_ID = f"api-{socket.gethostname()}-{os.getpid()}"


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
    attempt = Attempt(task)
    attempt.handle = asyncio.create_task(attempt.run(env, MiddlewareChain(default_middleware())))
    watcher = asyncio.create_task(
        watch_lease(broker, attempt, CONSUMER_ID, lease_ms, settings.lease_s / 3)
    )
    try:
        # Shielded: the request going away must not cancel the attempt from outside, which
        # would leave no outcome; it is interrupted with a reason instead.
        outcome = await asyncio.shield(attempt.handle)
    except asyncio.CancelledError:
        # The client went away (or the api is stopping): give the task back, not lose it.
        await _record(broker, settings, await _stop(attempt))
        raise
    finally:
        watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
    # No outcome, or one refused: the lease was lost and the task's new owner records it.
    lost = await _record(broker, settings, outcome)
    return ConsumeOnceResult(
        task_id=task.id,
        outcome="lost" if lost or outcome is None else outcome.kind,
        task=await get_task(broker, task.id),
    )


async def _stop(attempt: Attempt) -> Outcome | None:
    """Interrupt ``attempt`` to give its task back; its own outcome if it ended first."""
    attempt.interrupt("shutdown")
    handle = attempt.handle
    if handle is not None:
        await asyncio.wait([handle], timeout=STOP_TIMEOUT_S)
        if handle.done():
            return handle.result()
    # A handler ignoring cancellation: give the task back anyway; whatever it ends with later
    # is not recorded (nothing awaits it).
    return attempt.outcome_for("shutdown")


async def _record(broker: Broker, settings: ApiSettings, outcome: Outcome | None) -> bool:
    """Record ``outcome``; True when it was refused as stale (or there was none)."""
    if outcome is None:
        return True
    stale = await finish(
        broker,
        queue_of(outcome.task_id),
        CONSUMER_ID,
        [outcome],
        task_ttl_s=settings.task_ttl_s,
        dead_ttl_s=settings.dead_ttl_s,
    )
    return bool(stale)
