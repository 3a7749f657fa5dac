"""Drain benchmark: how fast one worker process empties a queue of no-op tasks.

Run with ``make bench`` (or ``uv run python -m tests.bench.drain --tasks 20000``). It starts a
private redis-server, enqueues the tasks in batches, runs ``taskforge-worker --burst`` as a
real process with leases and heartbeats on, and reports:

- enqueue rate (client side, batches of 1,000 through the enqueue script);
- drain rate, from the first attempt's start to the last one's finish as Redis recorded them
  (process start-up excluded), and the worker's wall time including start-up;
- the worker's peak RSS;
- the ratio to the target of 10,000 tasks/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskforge.broker import Broker
from taskforge.broker.enqueue import enqueue_many
from taskforge.keys import QueueKeys
from taskforge.models import TaskSpec
from tests.support.redis_server import RedisServer

#: The throughput the project aims at for no-op tasks on 2 cores (issue: engine speed).
TARGET_TASKS_PER_S = 10_000


async def enqueue_all(url: str, queue: str, count: int, batch: int) -> float:
    broker = Broker.from_url(url)
    started = time.perf_counter()
    for offset in range(0, count, batch):
        specs = [
            TaskSpec(type="echo", queue=queue, payload=None)
            for _ in range(offset, min(count, offset + batch))
        ]
        await enqueue_many(
            broker,
            specs,
            now_ms=int(time.time() * 1000),
            idempotency_ttl_s=60,
            max_payload_bytes=1024,
        )
    elapsed = time.perf_counter() - started
    await broker.close()
    return count / elapsed


async def drain_window_s(url: str, queue: str) -> tuple[float, int]:
    """First start to last finish over all records, from the times Redis stamped."""
    broker = Broker.from_url(url)
    keys = QueueKeys(queue)
    first, last, done = None, None, 0
    cursor = 0
    while True:
        cursor, found = await broker.redis.scan(cursor, match=keys.task("*"), count=5000)
        if found:
            async with broker.redis.pipeline(transaction=False) as pipe:
                for key in found:
                    pipe.hmget(key, "started_ms", "finished_ms", "state")
                rows = await pipe.execute()
            for started, finished, state in rows:
                if state == "succeeded":
                    done += 1
                    first = int(started) if first is None else min(first, int(started))
                    last = int(finished) if last is None else max(last, int(finished))
        if cursor == 0:
            break
    await broker.close()
    if first is None or last is None:
        return 0.0, 0
    return (last - first) / 1000, done


def run_worker(url: str, queue: str, concurrency: int) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    env.update(
        TASKFORGE_REDIS_URL=url,
        TASKFORGE_ENV="dev",
        TASKFORGE_QUEUES=queue,
        TASKFORGE_CONCURRENCY=str(concurrency),
        TASKFORGE_METRICS_PORT="0",
        TASKFORGE_LOG_LEVEL="WARNING",
        TASKFORGE_LEASE_S="30",
        TASKFORGE_HEARTBEAT_INTERVAL_S="5",
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "taskforge_worker.main", "--burst"], env=env, check=True)
    wall_s = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall_s, peak_kib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(dir=Path(tmp)) as server:
        print(f"redis-server on {server.url}; {args.tasks} no-op tasks; 1 worker process")
        print(
            f"{'concurrency':>11} {'enqueue/s':>10} {'drain/s':>9} {'wall s':>7} "
            f"{'peak RSS MiB':>12} {'vs target':>9}"
        )
        for concurrency in args.concurrency:
            queue = f"bench-{concurrency}-{os.getpid()}"
            enq_rate = asyncio.run(enqueue_all(server.url, queue, args.tasks, args.batch))
            wall_s, peak_kib = run_worker(server.url, queue, concurrency)
            window_s, done = asyncio.run(drain_window_s(server.url, queue))
            if done != args.tasks:
                print(f"ERROR: {done} of {args.tasks} tasks succeeded", file=sys.stderr)
                return 1
            rate = done / window_s if window_s > 0 else float("inf")
            print(
                f"{concurrency:>11} {enq_rate:>10.0f} {rate:>9.0f} {wall_s:>7.2f} "
                f"{peak_kib / 1024:>12.1f} {rate / TARGET_TASKS_PER_S:>8.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
