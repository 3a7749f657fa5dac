"""Keeps the worker's leases alive, and acts on the ones it lost or was asked to cancel."""

from __future__ import annotations

import asyncio
import logging

from taskforge import metrics
from taskforge.attempt import act_on_heartbeat
from taskforge.broker import Broker
from taskforge.broker.consume import heartbeat
from taskforge.errors import RedisUnavailable
from taskforge_worker.finisher import Finisher
from taskforge_worker.state import InFlight

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends every held lease each interval, for running and not-yet-recorded attempts."""

    def __init__(
        self,
        broker: Broker,
        worker_id: str,
        queues: list[str],
        inflight: InFlight,
        finisher: Finisher,
        *,
        lease_ms: int,
        interval_s: float,
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.queues = queues
        self.inflight = inflight
        self.finisher = finisher
        self.lease_ms = lease_ms
        self.interval_s = interval_s

    async def run(self) -> None:
        """Beat every interval until cancelled; a Redis outage is logged and retried."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.beat()
            except RedisUnavailable as exc:
                metrics.REDIS_ERRORS.labels("heartbeat").inc()
                log.warning("heartbeat failed, leases may lapse: %s", exc)

    async def beat(self) -> None:
        """Extend all leases once."""
        for queue in self.queues:
            ids = self.inflight.ids_of(queue) + self.finisher.held_ids(queue)
            lost, cancel = await heartbeat(self.broker, queue, self.worker_id, ids, self.lease_ms)
            act_on_heartbeat(self.inflight.running, lost, cancel, queue)
