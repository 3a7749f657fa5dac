"""What a task costs Redis: commands, round trips, CPU, and memory while it waits.

Method (checked on redis-server 7.0 by running an EVAL whose script makes three calls, and a
pipeline of ten INCRs, between two INFO snapshots):

- ``INFO commandstats`` counts every command, those a Lua script runs included (the EVAL
  counted 1 + 3), and so does ``total_commands_processed``. Commands per task are the
  commandstats deltas, INFO itself excluded; the per-command split goes to the JSON.
- ``total_reads_processed`` (INFO stats) counts read events on client sockets: the EVAL was
  one, the ten-command pipeline one. It is the round-trip count, as long as a request fits in
  one read (Redis reads up to 16 KiB at a time; a pipeline larger than that counts more than
  once, and a blocked XREAD that returns counts as the one read that sent it). The snapshot's
  own INFO is one read, subtracted.
- Redis CPU is ``used_cpu_user + used_cpu_sys`` (INFO cpu), the whole server process.

The snapshots are taken right around the measured work (after the bench's setup, before its
reads of the results), so the per-task figures include what the engine's processes do at
start-up and shutdown, amortised over the tasks, and nothing of the bench's own.

Memory per queued task: ``used_memory`` before and after enqueuing N tasks with a 100-byte JSON
payload (after a warm-up task created the queue's keys, and a short settle), divided by N; and,
for the JSON, ``MEMORY USAGE`` of each of the queue's keys summed by key pattern per task.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from redis import Redis

from taskforge.broker import Broker
from taskforge.broker.enqueue import enqueue_many
from taskforge.keys import QueueKeys
from taskforge.models import TaskSpec
from tests.bench.common import TASK_TYPE, sync_client

PAYLOAD_BYTES = 100
_TASK_ID = re.compile(r"\.[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative counters of one redis-server at one instant."""

    calls: dict[str, int]
    reads: int
    cpu_s: float


def snapshot(client: Redis) -> Snapshot:
    """One INFO call: commandstats, stats and cpu."""
    info: dict[str, Any] = client.info("commandstats", "stats", "cpu")
    calls = {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in info.items()
        if name.startswith("cmdstat_")
    }
    cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return Snapshot(calls, int(info["total_reads_processed"]), cpu)


def per_task(
    before: Snapshot, after: Snapshot, tasks: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Commands, round trips and Redis CPU per task; and commands per task by name."""
    by_name = {
        name: (count - before.calls.get(name, 0)) / tasks
        for name, count in after.calls.items()
        if name != "info" and count != before.calls.get(name, 0)
    }
    figures = {
        "commands": sum(by_name.values()),
        "round_trips": (after.reads - before.reads - 1) / tasks,
        "redis_cpu_us": (after.cpu_s - before.cpu_s) * 1e6 / tasks,
    }
    return figures, dict(sorted(by_name.items(), key=lambda kv: -kv[1]))


def sized_spec(queue: str, size: int = PAYLOAD_BYTES) -> TaskSpec:
    """A task whose stored (compact JSON) payload is exactly ``size`` bytes."""
    spec = TaskSpec(type=TASK_TYPE, queue=queue, payload={"data": ""})
    pad = size - len(spec.payload_json().encode())
    spec = TaskSpec(type=TASK_TYPE, queue=queue, payload={"data": "x" * pad})
    assert len(spec.payload_json().encode()) == size
    return spec


async def enqueue_batches(broker: Broker, specs: list[TaskSpec], batch: int) -> None:
    """Enqueue ``specs`` through the core, ``batch`` tasks per call."""
    for offset in range(0, len(specs), batch):
        await enqueue_many(
            broker,
            specs[offset : offset + batch],
            now_ms=int(time.time() * 1000),
            idempotency_ttl_s=60,
            max_payload_bytes=1 << 20,
        )


def memory_by_key(client: Redis, queue: str, count: int) -> dict[str, float]:
    """``MEMORY USAGE`` of the queue's keys per task, by key pattern (task ids as ``<id>``)."""
    totals: dict[str, int] = defaultdict(int)
    for key in client.scan_iter(match=f"{QueueKeys(queue).base}:*", count=1000):
        pattern = _TASK_ID.sub(".<id>", key)
        totals[pattern] += int(client.memory_usage(key) or 0)
    return {pattern: total / count for pattern, total in sorted(totals.items())}


async def memory_per_task(url: str, count: int) -> tuple[float, dict[str, float]]:
    """Bytes of ``used_memory`` per queued task with a 100-byte payload, and by key pattern.

    Flushes the database afterwards.
    """
    queue = "bench-memory"
    broker = Broker.from_url(url)
    client = sync_client(url)
    try:
        await enqueue_batches(broker, [sized_spec(queue)], 1)
        await asyncio.sleep(0.2)
        before = int(client.info("memory")["used_memory"])
        await enqueue_batches(broker, [sized_spec(queue) for _ in range(count)], 1000)
        await asyncio.sleep(0.5)  # client buffers shrink back once the writes are done
        after = int(client.info("memory")["used_memory"])
        by_key = memory_by_key(client, queue, count + 1)
        client.flushall()
    finally:
        await broker.close()
        client.close()
    return (after - before) / count, by_key
