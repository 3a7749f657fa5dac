"""What a worker holds: the attempts it runs, and its health signals."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from taskforge.attempt import Attempt
from taskforge_worker import metrics as worker_metrics


class InFlight:
    """The attempts running now, bounded by the worker's concurrency."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.running: dict[str, Attempt] = {}
        self._slot_freed = asyncio.Event()
        self._closed = False

    @property
    def free(self) -> int:
        """Slots free for new attempts."""
        return self.capacity - len(self.running)

    def add(self, running: Attempt) -> None:
        """Track a started attempt."""
        self.running[running.task.id] = running
        worker_metrics.TASKS_INFLIGHT.set(len(self.running))

    def remove(self, attempt: Attempt) -> None:
        """Forget a finished attempt and wake the fetch loop.

        Only that attempt: after its lease was lost, this worker may hold a newer attempt of
        the same task, whose lease must go on being extended.
        """
        if self.running.get(attempt.task.id) is attempt:
            del self.running[attempt.task.id]
        worker_metrics.TASKS_INFLIGHT.set(len(self.running))
        self._slot_freed.set()

    def ids_of(self, queue: str) -> list[str]:
        """Ids of the attempts running for ``queue``."""
        return [tid for tid, r in self.running.items() if r.task.queue == queue]

    async def wait_for_slot(self) -> None:
        """Return once at least one slot is free, or once :meth:`close` was called."""
        while self.free <= 0 and not self._closed:
            self._slot_freed.clear()
            await self._slot_freed.wait()

    def close(self) -> None:
        """Wake the fetch loop for good: shutdown must not wait for a slot to free up."""
        self._closed = True
        self._slot_freed.set()


@dataclass
class Liveness:
    """Signals ``/healthz`` and ``/readyz`` read from the health server's thread."""

    stall_timeout_s: float
    loop_tick: float = field(default_factory=time.monotonic)
    fetch_busy_since: float | None = None
    redis_error: str | None = "not connected yet"
    stopping: bool = False

    def live(self) -> str | None:
        """None when the loop turns and fetching is not stuck, else why not."""
        now = time.monotonic()
        if now - self.loop_tick > self.stall_timeout_s:
            return f"event loop blocked for {now - self.loop_tick:.1f}s"
        busy = self.fetch_busy_since
        if busy is not None and now - busy > self.stall_timeout_s:
            return f"fetch stalled for {now - busy:.1f}s"
        return None

    def ready(self) -> str | None:
        """None when Redis answers and the worker takes work, else why not."""
        if self.stopping:
            return "shutting down"
        if self.redis_error is not None:
            return f"redis: {self.redis_error}"
        return None

    async def tick(self, interval_s: float = 0.5) -> None:
        """Keep :attr:`loop_tick` fresh while the event loop turns."""
        while True:
            self.loop_tick = time.monotonic()
            await asyncio.sleep(interval_s)
