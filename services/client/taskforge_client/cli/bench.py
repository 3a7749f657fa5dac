"""``bench``: a load generator: enqueue through the gateway, then time the drain."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn

from taskforge_client.aio import AsyncTaskForge
from taskforge_client.cli._common import Json, connect_async, emit, err, out, settings
from taskforge_client.errors import TaskForgeError


@dataclass
class Run:
    """What one bench run measured."""

    tasks: int
    concurrency: int
    latencies_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    enqueue_s: float = 0.0
    drain_s: float | None = None
    #: 429 answers, each waited out (Retry-After) and resent: the key's rate limit at work.
    rate_limited: int = 0

    async def count(self, response: httpx.Response) -> None:
        """Response hook: counts the 429s."""
        if response.status_code == 429:
            self.rate_limited += 1

    def report(self) -> dict[str, Any]:
        """The figures, as ``--json`` prints them."""
        done = len(self.latencies_s)
        ordered = sorted(self.latencies_s)
        return {
            "tasks": self.tasks,
            "concurrency": self.concurrency,
            "enqueued": done,
            "errors": self.errors,
            "rate_limited": self.rate_limited,
            "enqueue_s": round(self.enqueue_s, 3),
            "enqueue_per_s": round(done / self.enqueue_s, 1) if self.enqueue_s else None,
            "latency_ms": {f"p{p}": _ms(percentile(ordered, p)) for p in (50, 90, 99)}
            | {"max": _ms(ordered[-1] if ordered else None)},
            "drain_s": None if self.drain_s is None else round(self.drain_s, 3),
            "drained_per_s": round(done / self.drain_s, 1) if self.drain_s else None,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def percentile(ordered: list[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted values (None when there are none)."""
    if not ordered:
        return None
    rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


async def _enqueue_all(client: AsyncTaskForge, run: Run, spec: dict[str, Any], tick: Any) -> None:
    remaining = iter(range(run.tasks))

    async def producer() -> None:
        for _ in remaining:  # one shared iterator: each index is taken by one producer
            started = time.perf_counter()
            try:
                await client.enqueue(spec["type"], spec["payload"], queue=spec["queue"])
            except TaskForgeError as error:
                kind = type(error).__name__
                run.errors[kind] = run.errors.get(kind, 0) + 1
            else:
                run.latencies_s.append(time.perf_counter() - started)
            tick()

    await asyncio.gather(*(producer() for _ in range(run.concurrency)))


async def _drained(client: AsyncTaskForge, queue: str, timeout_s: float) -> bool:
    # Assumes no other traffic on the queue: done when nothing waits or runs there.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = await client.queue(queue)
        if stats.queued + stats.running + stats.scheduled == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def _bench(
    run: Run, spec: dict[str, Any], drain_timeout_s: float, progress: Progress
) -> None:
    hooks = {"response": [run.count]}
    http = httpx.AsyncClient(timeout=settings().timeout_s, event_hooks=hooks)
    async with http, connect_async(bool(spec["json"]), http) as client:
        bar: TaskID = progress.add_task("enqueue", total=run.tasks)
        started = time.perf_counter()
        await _enqueue_all(client, run, spec, lambda: progress.advance(bar))
        run.enqueue_s = time.perf_counter() - started
        if drain_timeout_s > 0:
            progress.add_task("drain", total=None)
            if await _drained(client, spec["queue"], drain_timeout_s):
                run.drain_s = time.perf_counter() - started


def bench(
    tasks: Annotated[int, typer.Option("--tasks", "-n", min=1)] = 1000,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=1000)] = 16,
    task_type: Annotated[str, typer.Option("--type")] = "echo",
    payload: Annotated[str, typer.Option(help="JSON payload of every task.")] = "{}",
    queue: Annotated[str, typer.Option("--queue", "-q")] = "default",
    drain_timeout_s: Annotated[
        float, typer.Option("--drain-timeout", help="Seconds to wait for workers; 0: do not wait.")
    ] = 300.0,
    as_json: Json = False,
) -> None:
    """Enqueue --tasks tasks over --concurrency connections; print tasks/s and latencies.

    Each enqueue is one request (429s are retried after Retry-After, so a key's rate limit
    shows in the figures: use a key with high limits). Then, unless --drain-timeout 0, waits
    until the queue is empty and prints the end-to-end rate.
    """
    spec = {"type": task_type, "payload": json.loads(payload), "queue": queue, "json": as_json}
    run = Run(tasks, concurrency)
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, disable=as_json or not err.is_terminal, transient=True,
    )  # fmt: skip
    with progress:
        asyncio.run(_bench(run, spec, drain_timeout_s, progress))
    report = run.report()
    if as_json:
        emit(report)
        return
    latency = report["latency_ms"]
    out.print(f"enqueued {report['enqueued']}/{tasks} in {report['enqueue_s']} s: "
              f"{report['enqueue_per_s']} tasks/s over {concurrency} connections")  # fmt: skip
    out.print(f"latency ms: p50 {latency['p50']}  p90 {latency['p90']}  p99 {latency['p99']}"
              f"  max {latency['max']}")  # fmt: skip
    if run.drain_s is not None:
        out.print(f"drained in {report['drain_s']} s: {report['drained_per_s']} tasks/s end to end")
    elif drain_timeout_s > 0:
        out.print(f"not drained after {drain_timeout_s:g} s")
    if run.rate_limited:
        out.print(
            f"rate limited {run.rate_limited} times (429, waited out): the key's limit bounds"
            " these figures; bench with a key created with a higher --rate-per-s"
        )
    if run.errors:
        out.print(f"errors: {run.errors}")
