"""Kill storm: workers, schedulers and Redis SIGKILLed at random while tasks flow.

Invariant 1 under fire: every task whose enqueue returned ends ``succeeded`` (the handlers
here always succeed eventually), each ran at least once, and nothing is left in a lease, the
stream or the scheduled set. Runs with ``make chaos`` (about two minutes); the default suite
has one targeted test per failure point instead (tests/integration).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskforge.broker import Broker
from taskforge.broker.enqueue import enqueue_many
from taskforge.keys import QueueKeys
from taskforge.models import BackoffPolicy, TaskSpec
from tests.support.processes import ServiceGroup, ServiceProcess, read_lines, tf_env, wait_until
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.chaos

TASKS = 3000
STORM_S = 45.0
WORKER_ENV = tf_env(lease_s=2, heartbeat_interval_s=0.5, concurrency=16, block_ms=200)
SCHEDULER_ENV = tf_env(tick_s=0.2)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServiceGroup]:
    with ServiceGroup(log_dir=tmp_path / "logs") as group:
        yield group


async def _enqueue(url: str, specs: list[TaskSpec]) -> list[str]:
    broker = Broker.from_url(url)
    try:
        ids: list[str] = []
        for start in range(0, len(specs), 500):
            results = await enqueue_many(
                broker, specs[start : start + 500], now_ms=int(time.time() * 1000),
                idempotency_ttl_s=3600, max_payload_bytes=4096,
            )  # fmt: skip
            ids += [r.task_id for r in results]
        return ids
    finally:
        await broker.close()


async def _leftovers(url: str, queue: str) -> tuple[int, int, int, int]:
    broker = Broker.from_url(url)
    keys = QueueKeys(queue)
    try:
        counters = await broker.redis.hgetall(keys.counters)
        return (
            int(counters.get("succeeded", 0)),
            await broker.redis.zcard(keys.leases),
            await broker.redis.xlen(keys.stream),
            await broker.redis.zcard(keys.scheduled),
        )
    finally:
        await broker.close()


async def test_kill_storm_loses_nothing(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    rng = random.Random(20261128)
    ran = tmp_path / "ran"
    fast_retry = BackoffPolicy(kind="fixed", base_s=0.2, cap_s=0.2, jitter=False)
    specs = [
        TaskSpec(type="slow", queue=queue_name, max_retries=50, backoff=fast_retry,
                 payload={"seconds": rng.uniform(0.01, 0.3), "done_marker": str(ran)})
        for _ in range(TASKS)
    ]  # fmt: skip
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    with RedisServer(dir=tmp_path / "redis", extra_args=aof) as server:
        ids = await _enqueue(server.url, specs)
        workers: list[ServiceProcess] = [
            services.worker(server.url, queue_name, env=WORKER_ENV) for _ in range(3)
        ]
        scheduler = services.scheduler(server.url, env=SCHEDULER_ENV)
        deadline = time.monotonic() + STORM_S
        kills = Counter[str]()
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            roll = rng.random()
            if roll < 0.7:
                victim = workers.pop(rng.randrange(len(workers)))
                victim.kill()
                workers.append(services.worker(server.url, queue_name, env=WORKER_ENV))
                kills["worker"] += 1
            elif roll < 0.9:
                scheduler.kill()
                scheduler = services.scheduler(server.url, env=SCHEDULER_ENV)
                kills["scheduler"] += 1
            else:
                server.restart(kill=True)
                kills["redis"] += 1
        await wait_until(
            lambda: _all_done(server.url, queue_name),
            120,
            message=lambda: f"{len(set(read_lines(ran)))} of {TASKS} done; kills {dict(kills)}",
            processes=[*workers, scheduler],
        )
        succeeded, leased, streamed, scheduled = await _leftovers(server.url, queue_name)
    runs = Counter(read_lines(ran))
    assert set(runs) == set(ids), "a task never ran to completion"
    assert succeeded == TASKS, "a task was recorded as succeeded twice"
    assert (leased, streamed, scheduled) == (0, 0, 0)
    assert kills["worker"] > 0
    print(f"kills: {dict(kills)}; tasks run more than once: {sum(c > 1 for c in runs.values())}")


async def _all_done(url: str, queue: str) -> bool:
    succeeded, leased, streamed, scheduled = await _leftovers(url, queue)
    return succeeded >= TASKS and leased == 0 and streamed == 0 and scheduled == 0
