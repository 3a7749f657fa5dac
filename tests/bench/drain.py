"""Drain: how fast 1 or 2 worker processes empty a queue that already holds the tasks.

For each handler (``echo``, which does nothing, and the one-round-trip ``bench.roundtrip``,
see :mod:`tests.bench.handlers`), process count and concurrency: the tasks are enqueued in
batches first, then ``taskforge-worker --burst`` processes start together (leases and
heartbeats at their defaults) and exit once the queue is empty. The figures:

- drain rate: tasks over the window from the first attempt's start to the last one's finish,
  as Redis stamped them in the task records (process start-up excluded);
- Redis commands, round trips and CPU per task (:mod:`tests.bench.redis_costs`; snapshots
  taken just before the workers start and just after they exit);
- worker CPU per task: the workers' user+system time within that same window (sampled from
  /proc every 20 ms and interpolated at the window's ends: start-up and shutdown excluded);
- the largest peak RSS of the worker processes.

Between drains the bench's private Redis is flushed. Any task not ``succeeded``, a handler
counter that disagrees, or a worker exiting non-zero stops the bench with an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from redis import Redis

from taskforge.broker import Broker
from taskforge.keys import QueueKeys
from taskforge.models import TaskSpec
from tests.bench.common import (
    COUNTER_KEY,
    BenchError,
    ProcessCost,
    get_int,
    reap_all,
    spawn_worker,
    sync_client,
)
from tests.bench.common import TASK_TYPE as ROUNDTRIP
from tests.bench.redis_costs import enqueue_batches, per_task, snapshot
from tests.bench.report import Results, Target

ECHO = "echo"


@dataclass(frozen=True, slots=True)
class Drain:
    """One drain's figures."""

    rate: float
    worker_cpu_us: float
    max_rss_bytes: int
    costs: dict[str, float]
    by_command: dict[str, float]


def window_ms(client: Redis, queue: str, tasks: int) -> tuple[int, int]:
    """First start and last finish (Unix ms) over the queue's task records, as Redis stamped.

    Raises:
        BenchError: not every one of the ``tasks`` records says ``succeeded``.
    """
    first, last, done, seen = None, None, 0, 0
    for keys in _batches(client.scan_iter(match=QueueKeys(queue).task("*"), count=5000), 5000):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "started_ms", "finished_ms", "state")
        for started, finished, state in pipe.execute():
            seen += 1
            if state != "succeeded" or not started or not finished:
                continue
            done += 1
            first = int(started) if first is None else min(first, int(started))
            last = int(finished) if last is None else max(last, int(finished))
    if done != tasks or first is None or last is None:
        raise BenchError(f"drain of {queue}: {done} of {tasks} tasks succeeded ({seen} records)")
    return first, max(last, first + 1)


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _enqueue(url: str, queue: str, task_type: str, tasks: int) -> None:
    broker = Broker.from_url(url)
    try:
        specs = [TaskSpec(type=task_type, queue=queue, payload={}) for _ in range(tasks)]
        await enqueue_batches(broker, specs, 1000)
    finally:
        await broker.close()


def _run_workers(
    url: str, queue: str, processes: int, concurrency: int, tasks: int
) -> list[ProcessCost]:
    procs = [spawn_worker(url, queue, concurrency, burst=True) for _ in range(processes)]
    # Generous: a drain slower than 200 tasks/s is broken, not slow.
    return reap_all(procs, 60 + tasks / 200, f"{processes} burst worker(s)")


def drain_once(url: str, task_type: str, processes: int, concurrency: int, tasks: int) -> Drain:
    """Enqueue ``tasks``, drain them with ``processes`` burst workers, measure, flush Redis."""
    queue = f"drain-{task_type.replace('.', '_')}-{processes}x{concurrency}"
    asyncio.run(_enqueue(url, queue, task_type, tasks))
    client = sync_client(url)
    try:
        before = snapshot(client)
        costs = _run_workers(url, queue, processes, concurrency, tasks)
        after = snapshot(client)
        first_ms, last_ms = window_ms(client, queue, tasks)
        ran = get_int(client, COUNTER_KEY)
        if task_type == ROUNDTRIP and ran != tasks:
            raise BenchError(f"drain of {queue}: the handler ran {ran} times for {tasks} tasks")
        client.flushall()
    finally:
        client.close()
    figures, by_command = per_task(before, after, tasks)
    cpu_s = sum(c.cpu_between(first_ms, last_ms) for c in costs)
    return Drain(
        rate=tasks * 1000 / (last_ms - first_ms),
        worker_cpu_us=cpu_s * 1e6 / tasks,
        max_rss_bytes=max(c.max_rss_bytes for c in costs),
        costs=figures,
        by_command=by_command,
    )


#: (handler, label, process counts, concurrencies or None for the whole sweep) of each run:
#: the no-op handler at one concurrency, for the engine's own cost.
PLAN = (
    (ECHO, "echo (no-op) handler", (1,), (200,)),
    (ROUNDTRIP, "1-round-trip handler", (1, 2), None),
)
COST_UNITS = {"commands": "cmd/task", "round_trips": "RT/task", "redis_cpu_us": "us/task"}
COST_LABELS = {
    "commands": "Redis commands per task (Lua-internal included)",
    "round_trips": "Redis round trips per task",
    "redis_cpu_us": "Redis CPU per task",
    "worker_cpu_us": "worker CPU per task (in the drain window)",
    "worker_rss_mb": "worker peak RSS per process",
}
TARGETS = {"drain": Target(">=", 10_000), "worker_rss_mb": Target("<=", 80)}


def _record(results: Results, tag: str, label: str, d: Drain) -> None:
    results.add(f"drain.{tag}", d.rate, label, "tasks/s", show=False)
    for figure, value in d.costs.items():
        results.add(f"cost.{tag}.{figure}", value, figure, COST_UNITS[figure], show=False)
    results.add(f"cost.{tag}.worker_cpu_us", d.worker_cpu_us, "", "us/task", show=False)
    results.add(f"cost.{tag}.worker_rss_mb", d.max_rss_bytes / 1e6, "", "MB", show=False)
    results.detail(f"cost.{tag}.commands_by_name", d.by_command)


def run_section(results: Results, url: str, tasks: int, concurrencies: list[int]) -> None:
    """One run of every drain in :data:`PLAN`."""
    for task_type, label, process_counts, fixed in PLAN:
        name = task_type.replace(".", "_")
        for processes in process_counts:
            for concurrency in fixed or concurrencies:
                d = drain_once(url, task_type, processes, concurrency, tasks)
                text = f"drain, {label}, {processes} proc, concurrency {concurrency}"
                _record(results, f"{name}.p{processes}.c{concurrency}", text, d)


def summarize(results: Results) -> None:
    """Show the best concurrency of each handler and process count, with its costs."""
    for task_type, label, process_counts, _ in PLAN:
        name = task_type.replace(".", "_")
        for processes in process_counts:
            prefix = f"drain.{name}.p{processes}.c"
            sweep = [k for k in results.figures if k.startswith(prefix)]
            if not sweep:
                continue
            best = max(sweep, key=lambda k: results.figures[k].median)
            concurrency = best.removeprefix(prefix)
            target = TARGETS["drain"] if task_type == ROUNDTRIP else None
            results.copy_as(f"drain.{name}.p{processes}.best", best,
                            f"drain, {label}, {processes} proc (best: concurrency {concurrency})",
                            target)  # fmt: skip
            tag = f"{name}.p{processes}.c{concurrency}"
            short = "echo" if task_type == ECHO else "1-RT"
            for figure, text in COST_LABELS.items():
                key = f"cost.{name}.p{processes}.best.{figure}"
                text = f"  {text}, {short}, {processes} proc"
                results.copy_as(key, f"cost.{tag}.{figure}", text, TARGETS.get(figure))
