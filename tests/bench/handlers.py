"""The benchmark's handler, written as a user would write one: one pipelined Redis round trip.

A worker loads this module when ``TASKFORGE_HANDLERS=tests.bench.handlers`` (the bench starts
workers from the repository root, so the import resolves); nothing in the product registers it.

``bench.roundtrip`` reads the clock first, then sends one pipeline: INCR a counter and SET a key
named after the task to that start time (nanoseconds since the epoch). The drain counts the
counter; the pickup-latency section reads the start times back.
"""

from __future__ import annotations

import os
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from taskforge.handlers import TaskContext, handler
from tests.bench.common import COUNTER_KEY, START_PREFIX, TASK_TYPE, URL_ENV

_url = os.environ.get(URL_ENV)
if not _url:
    # load_handlers reports an ImportError as a configuration error naming this module.
    raise ImportError(f"{URL_ENV} must name the Redis the benchmark handler writes to")
# redis-py's default asyncio pool raises MaxConnectionsError past 100 connections, which fails
# tasks at a concurrency above that; a blocking pool makes the extra handlers wait their turn.
# Connections open on first use, inside the worker's event loop.
client = Redis(connection_pool=BlockingConnectionPool.from_url(_url, max_connections=100))


@handler(TASK_TYPE)
async def roundtrip(payload: Any, ctx: TaskContext) -> None:
    """INCR the counter and SET ``bench:start:<task id>`` to the start time, in one round trip."""
    started_ns = time.time_ns()
    async with client.pipeline(transaction=False) as pipe:
        pipe.incr(COUNTER_KEY)
        pipe.set(START_PREFIX + ctx.task_id, started_ns)
        await pipe.execute()
