"""The fetch loop: fill free slots from the queues in priority order, or wait for work."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from taskforge import metrics
from taskforge.broker import Broker, FetchedTask
from taskforge.broker.consume import fetch, wait_for_work
from taskforge.errors import RedisUnavailable
from taskforge_worker import metrics as worker_metrics
from taskforge_worker.backoff import Backoff
from taskforge_worker.state import InFlight, Liveness

log = logging.getLogger(__name__)


class Fetcher:
    """Starts attempts while there are free slots and work to do."""

    def __init__(
        self,
        broker: Broker,
        worker_id: str,
        queues: list[str],
        inflight: InFlight,
        liveness: Liveness,
        start: Callable[[FetchedTask], None],
        *,
        batch: int,
        lease_ms: int,
        block_ms: int,
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.queues = queues
        self.inflight = inflight
        self.liveness = liveness
        self.start = start
        self.batch = batch
        self.lease_ms = lease_ms
        self.block_ms = block_ms
        self.stopping = False
        #: True while blocked waiting for new entries: safe to cancel, nothing is held.
        self.waiting = False
        #: Set once a pass found every queue empty (burst mode stops then).
        self.drained = asyncio.Event()

    async def run(self) -> None:
        """Fetch until :attr:`stopping`; survives Redis outages with backoff."""
        backoff = Backoff()
        while not self.stopping:
            await self.inflight.wait_for_slot()
            if self.stopping:
                return
            self.liveness.fetch_busy_since = time.monotonic()
            try:
                await self._pass()
                self.liveness.redis_error = None
                backoff.reset()
            except RedisUnavailable as exc:
                metrics.REDIS_ERRORS.labels("fetch").inc()
                self.liveness.redis_error = str(exc)
                self.broker.forget_queues()
                log.warning("fetch failed, retrying: %s", exc)
                self.liveness.fetch_busy_since = None
                await backoff.sleep()
            finally:
                self.liveness.fetch_busy_since = None

    async def _pass(self) -> None:
        """One pass over the queues in order; blocks briefly when all are empty."""
        idle: dict[str, str] = {}
        for queue in self.queues:
            free = self.inflight.free
            if free <= 0:
                return
            await self.broker.ensure_queue(queue)
            tasks, delivered, last_id = await fetch(
                self.broker, queue, self.worker_id, min(free, self.batch), self.lease_ms
            )
            worker_metrics.FETCH_BATCH.observe(len(tasks))
            for task in tasks:
                self.start(task)
            if delivered:
                return  # the next pass starts again from the highest-priority queue
            idle[queue] = last_id
        if not self.inflight.running:
            self.drained.set()
        if not self.stopping:
            self.waiting = True
            busy_since, self.liveness.fetch_busy_since = self.liveness.fetch_busy_since, None
            try:
                await wait_for_work(self.broker, idle, self.block_ms)
            finally:
                self.waiting = False
                self.liveness.fetch_busy_since = busy_since
