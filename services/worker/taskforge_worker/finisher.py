"""Records outcomes in Redis in batches: one finish script call per queue per flush.

Outcomes that arrive while a flush is in flight wait for the next one, so under load each
round trip carries many tasks (group commit). A task stays leased, and heartbeated, until its
outcome is recorded; if the worker dies first, the task runs again (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from taskforge import metrics
from taskforge.broker import Broker, Outcome
from taskforge.broker.consume import finish
from taskforge.errors import RedisUnavailable
from taskforge_worker.backoff import Backoff

log = logging.getLogger(__name__)


class Finisher:
    """Buffers outcomes per queue and flushes them."""

    def __init__(self, broker: Broker, worker_id: str, *, task_ttl_s: int, dead_ttl_s: int) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.task_ttl_s = task_ttl_s
        self.dead_ttl_s = dead_ttl_s
        self._pending: dict[str, list[Outcome]] = defaultdict(list)
        self._flushing: dict[str, list[Outcome]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, queue: str, outcome: Outcome) -> None:
        """Queue ``outcome`` for the next flush."""
        self._pending[queue].append(outcome)
        self._idle.clear()
        self._wake.set()

    def held_ids(self, queue: str) -> list[str]:
        """Tasks whose outcome is not recorded yet: their leases must still be extended."""
        held = [o.task_id for o in self._pending.get(queue, ())]
        held += [o.task_id for o in self._flushing.get(queue, ())]
        return held

    async def run(self) -> None:
        """Flush whenever there is something to flush, until cancelled."""
        backoff = Backoff()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush_once()
                backoff.reset()
            except RedisUnavailable as exc:
                metrics.REDIS_ERRORS.labels("finish").inc()
                log.warning("cannot record outcomes yet: %s", exc)
                self._wake.set()
                await backoff.sleep()

    async def _flush_once(self) -> None:
        self._flushing, self._pending = dict(self._pending), defaultdict(list)
        try:
            for queue, outcomes in list(self._flushing.items()):
                try:
                    stale = await finish(
                        self.broker,
                        queue,
                        self.worker_id,
                        outcomes,
                        task_ttl_s=self.task_ttl_s,
                        dead_ttl_s=self.dead_ttl_s,
                    )
                except RedisUnavailable:
                    raise
                except Exception:  # unrecordable (a bug): drop them; their leases lapse, they rerun
                    log.exception("dropped %d outcome(s) Redis refused", len(outcomes))
                    stale = []
                del self._flushing[queue]
                if stale:
                    metrics.LEASES_LOST.labels(queue).inc(len(stale))
                    log.warning("dropped outcomes of %d task(s) whose lease was lost", len(stale))
        finally:
            # Whatever was not recorded goes back in front of newer outcomes.
            for queue, outcomes in self._flushing.items():
                self._pending[queue][:0] = outcomes
            self._flushing = {}
            if not any(self._pending.values()):
                self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted outcome is recorded; False if ``timeout_s`` ran out."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
