"""The scheduler's passes: promote due tasks, reclaim expired leases, export queue gauges.

Every transition is one Lua script that takes what it moves out of its source set, so any
number of scheduler replicas can run these passes at once without moving a task twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from taskforge import metrics, tracing
from taskforge.broker import Broker
from taskforge.broker.admin import queue_stats_many
from taskforge.broker.connection import translate_errors
from taskforge.broker.maintenance import promote_due, reclaim_expired, sweep, trim_dead_indexes
from taskforge.broker.registry import reap_queues
from taskforge.errors import RedisUnavailable
from taskforge.settings import SchedulerSettings
from taskforge_scheduler import metrics as scheduler_metrics
from taskforge_scheduler.gauges import QueueGauges

log = logging.getLogger(__name__)


class Scheduler:
    """Runs the periodic passes until stopped."""

    def __init__(self, settings: SchedulerSettings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.broker = broker or Broker.from_settings(settings)
        self.queues: list[str] = []
        self.redis_error: str | None = "not connected yet"
        self.last_tick = time.monotonic()
        self._stop = asyncio.Event()
        self._queues_read_at = float("-inf")
        self._gauges_at = float("-inf")
        self.gauges = QueueGauges(settings.metrics_max_queues)

    def request_stop(self) -> None:
        """Finish the current pass, then stop."""
        self._stop.set()

    async def run(self) -> None:
        """Tick every ``tick_s`` until :meth:`request_stop`."""
        log.info("scheduler started, tick %.2fs", self.settings.tick_s)
        try:
            while not self._stop.is_set():
                try:
                    await self.tick()
                    self.redis_error = None
                except RedisUnavailable as exc:
                    metrics.REDIS_ERRORS.labels("scheduler").inc()
                    self.redis_error = str(exc)
                    log.warning("scheduler pass failed: %s", exc)
                self.last_tick = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.tick_s)
        finally:
            await self.broker.close()
            log.info("scheduler stopped")

    async def tick(self) -> None:
        """One pass over every queue."""
        started = time.monotonic()
        if started - self._queues_read_at >= self.settings.queue_refresh_s:
            self.queues = await self.broker.queues()
            self._queues_read_at = started
        if started - self._gauges_at >= self.settings.gauge_interval_s:
            await self.export_gauges()
            self._gauges_at = started
        await self._sweep()
        scheduler_metrics.TICK_DURATION.observe(time.monotonic() - started)
        scheduler_metrics.LAST_TICK.set(time.time())

    async def _sweep(self) -> None:
        """One pipelined promote-and-reclaim over every queue; full batches are drained."""
        limit = self.settings.batch_size
        started_ns = time.time_ns()
        moved = await sweep(self.broker, self.queues, limit, task_ttl_s=self.settings.task_ttl_s)
        for queue, (promoted, reclaimed) in zip(self.queues, moved, strict=True):
            self._count(queue, promoted, reclaimed, started_ns)
            if limit in (promoted, reclaimed):
                await self._drain(queue)

    def _count(self, queue: str, promoted: int, reclaimed: int, started_ns: int) -> None:
        """Count what a pass moved; a pass that moved tasks is also a span (docs/tracing.md)."""
        label = self.gauges.label(queue)
        if promoted:
            metrics.PROMOTED.labels(label).inc(promoted)
            tracing.record_pass("promote", started_ns, _moved(queue, promoted))
        if reclaimed:
            metrics.RECLAIMED.labels(label).inc(reclaimed)
            tracing.record_pass("reclaim", started_ns, _moved(queue, reclaimed))
            log.warning("reclaimed %d task(s) from dead workers", reclaimed, extra={"queue": queue})

    async def _drain(self, queue: str) -> None:
        """Promote and reclaim in batches until less than a full batch is left."""
        limit = self.settings.batch_size
        while True:
            started_ns = time.time_ns()
            moved = await promote_due(self.broker, queue, limit)
            if moved:
                self._count(queue, moved, 0, started_ns)
            if moved < limit:
                break
        while True:
            started_ns = time.time_ns()
            moved = await reclaim_expired(
                self.broker, queue, limit, task_ttl_s=self.settings.task_ttl_s
            )
            if moved:
                self._count(queue, 0, moved, started_ns)
            if moved < limit:
                break

    async def export_gauges(self) -> None:
        """Refresh the bounded queue gauges, trim the DLQ index, reap empty idle queues."""
        now_ms = int(time.time() * 1000)
        stats = await queue_stats_many(self.broker, self.queues)
        self.gauges.export(stats)
        await trim_dead_indexes(self.broker, self.queues, self.settings.dead_ttl_s, now_ms)
        empty = [s.queue for s in stats if s.depth == 0]
        async with translate_errors("reap"):
            reaped = await reap_queues(self.broker, empty, idle_s=self.settings.queue_idle_ttl_s)
        if reaped:
            log.info("reaped %d empty idle queue(s): %s", len(reaped), ", ".join(reaped[:20]))
            gone = set(reaped)
            self.queues = [q for q in self.queues if q not in gone]

    def live(self) -> str | None:
        """None while passes keep happening, else why not."""
        silent_s = time.monotonic() - self.last_tick
        limit_s = max(30.0, self.settings.tick_s * 10 + self.settings.redis_socket_timeout_s * 3)
        return None if silent_s < limit_s else f"no scheduler pass for {silent_s:.0f}s"

    def ready(self) -> str | None:
        """None when the last pass reached Redis."""
        return None if self.redis_error is None else f"redis: {self.redis_error}"


def _moved(queue: str, count: int) -> dict[str, str | int]:
    return {"taskforge.task.queue": queue, "taskforge.tasks.moved": count}
