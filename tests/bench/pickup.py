"""Pickup latency: from an enqueue being accepted to its handler starting, at a steady rate.

One worker process runs the one-round-trip handler (:mod:`tests.bench.handlers`) and is idle
before the producer starts (a warm-up task has gone through it). The producer, in this process,
enqueues one task per call through the core at 200 tasks/s on a fixed schedule and notes
``time.time_ns()`` when each enqueue returns; the handler's first act is to read the same clock
and store it under the task's id. The latency of a task is the difference; both processes read
one machine's clock. A difference can be negative: Redis wakes the worker when the task is
written, before the producer has read the reply.
"""

from __future__ import annotations

import asyncio
import time

from redis import Redis

from taskforge.broker import Broker
from taskforge.broker.enqueue import enqueue_many
from taskforge.models import TaskSpec
from tests.bench.common import (
    COUNTER_KEY,
    START_PREFIX,
    TASK_TYPE,
    BenchError,
    get_int,
    percentile,
    spawn_worker,
    stop,
    sync_client,
)
from tests.bench.report import Results, Target

QUEUE = "bench-pickup"
RATE_PER_S = 200
#: Worker concurrency: the product's default.
CONCURRENCY = 32


async def _enqueue(broker: Broker, n: int) -> tuple[str, int]:
    spec = TaskSpec(type=TASK_TYPE, queue=QUEUE, payload={"n": n})
    [result] = await enqueue_many(
        broker, [spec], now_ms=int(time.time() * 1000), idempotency_ttl_s=60, max_payload_bytes=1024
    )
    return result.task_id, time.time_ns()


async def _wait_count(client: Redis, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (done := get_int(client, COUNTER_KEY)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"pickup: {done} of {count} tasks ran")
        await asyncio.sleep(0.05)


async def _produce(url: str, seconds: float) -> list[float]:
    """Latencies in ms of ``seconds`` x :data:`RATE_PER_S` tasks."""
    broker = Broker.from_url(url)
    client = sync_client(url)
    try:
        await _enqueue(broker, -1)
        await _wait_count(client, 1, 60)
        await asyncio.sleep(1.5)  # idle: the worker is back in its blocking wait
        accepted: list[tuple[str, int]] = []
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(int(seconds * RATE_PER_S)):
            await asyncio.sleep(max(0.0, start + n / RATE_PER_S - loop.time()))
            accepted.append(await _enqueue(broker, n))
        await _wait_count(client, 1 + len(accepted), 30)
        started = client.mget([START_PREFIX + task_id for task_id, _ in accepted])
    finally:
        await broker.close()
        client.close()
    latencies = []
    for (task_id, accepted_ns), started_ns in zip(accepted, started, strict=True):
        if started_ns is None:
            raise BenchError(f"pickup: {task_id} ran without storing its start time")
        latencies.append((int(started_ns) - accepted_ns) / 1e6)
    return latencies


def run_section(results: Results, url: str, seconds: float) -> None:
    """One run: a fresh idle worker, the producer, the percentiles."""
    worker = spawn_worker(url, QUEUE, CONCURRENCY, burst=False)
    try:
        latencies = asyncio.run(_produce(url, seconds))
    finally:
        stop(worker, "pickup worker")
    sync_client(url).flushall()
    label = f"pickup latency at {RATE_PER_S}/s for {seconds:g} s"
    for q, target in ((50, Target("<=", 1.0)), (95, None), (99, Target("<=", 1.5))):
        results.add(f"pickup.p{q}", percentile(latencies, q), f"{label}, p{q}", "ms", target)
    results.add("pickup.max", max(latencies), f"{label}, max", "ms", show=False)
    results.add("pickup.min", min(latencies), f"{label}, min", "ms", show=False)
