"""Python enqueue through the core (``taskforge.broker.enqueue.enqueue_many``), in one process.

Three ways a producer calls it, each building its ``TaskSpec`` objects inside the timing as a
producer would:

- one task per call, each awaited before the next (the slowest, and the figure targeted);
- one task per call, 100 calls at a time with ``asyncio.gather`` (a busy async producer);
- 1,000 tasks per call (batch).
"""

from __future__ import annotations

import asyncio
import time

from taskforge.broker import Broker
from taskforge.broker.enqueue import enqueue_many
from taskforge.models import TaskSpec
from tests.bench.common import TASK_TYPE, sync_client
from tests.bench.redis_costs import enqueue_batches
from tests.bench.report import Results, Target

QUEUE = "bench-enqueue"
GATHER = 100
BATCH = 1000


async def _one(broker: Broker, n: int) -> None:
    await enqueue_many(
        broker,
        [TaskSpec(type=TASK_TYPE, queue=QUEUE, payload={"n": n})],
        now_ms=int(time.time() * 1000),
        idempotency_ttl_s=60,
        max_payload_bytes=1 << 20,
    )


async def sequential(broker: Broker, count: int) -> float:
    """Tasks/s, one call per task, one at a time."""
    started = time.perf_counter()
    for n in range(count):
        await _one(broker, n)
    return count / (time.perf_counter() - started)


async def gathered(broker: Broker, count: int) -> float:
    """Tasks/s, one call per task, :data:`GATHER` calls in flight together."""
    started = time.perf_counter()
    for offset in range(0, count, GATHER):
        await asyncio.gather(*(_one(broker, n) for n in range(offset, offset + GATHER)))
    return count / (time.perf_counter() - started)


async def batched(broker: Broker, count: int) -> float:
    """Tasks/s, :data:`BATCH` tasks per call."""
    started = time.perf_counter()
    specs = [TaskSpec(type=TASK_TYPE, queue=QUEUE, payload={"n": n}) for n in range(count)]
    await enqueue_batches(broker, specs, BATCH)
    return count / (time.perf_counter() - started)


async def _measure(url: str, single: int, batch: int) -> dict[str, float]:
    broker = Broker.from_url(url)
    try:
        await _one(broker, -1)  # the queue's registration and the script load are not timed
        return {
            "sequential": await sequential(broker, single),
            "gathered": await gathered(broker, single),
            "batch": await batched(broker, batch),
        }
    finally:
        await broker.close()


def run_section(results: Results, url: str, single: int, batch: int) -> None:
    """One run of each way, on a flushed Redis."""
    rates = asyncio.run(_measure(url, single, batch))
    sync_client(url).flushall()
    results.add("enqueue.python.sequential", rates["sequential"],
                "Python enqueue, 1 task/call, sequential", "tasks/s",
                Target(">=", 9_000))  # fmt: skip
    results.add("enqueue.python.gathered", rates["gathered"],
                f"Python enqueue, 1 task/call, {GATHER} gathered", "tasks/s",
                Target(">=", 9_000))  # fmt: skip
    results.add("enqueue.python.batch", rates["batch"],
                f"Python enqueue, batches of {BATCH}", "tasks/s", Target(">=", 50_000))  # fmt: skip
