"""The worker: wires fetch, execute, heartbeat and finish together, and shuts down gracefully.

Shutdown (SIGTERM): stop fetching, let in-flight attempts finish within the grace period,
give back the rest without spending an attempt, record every outcome, then exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor

from taskforge.attempt import STOP_TIMEOUT_S, Attempt
from taskforge.broker import Broker, FetchedTask, Outcome
from taskforge.execution import ExecutionEnv
from taskforge.handlers import Registry
from taskforge.middleware import Middleware, MiddlewareChain, default_middleware
from taskforge.net.egress import handler_client
from taskforge.settings import WorkerSettings
from taskforge_worker.fetcher import Fetcher
from taskforge_worker.finisher import Finisher
from taskforge_worker.leases import Heartbeat
from taskforge_worker.state import InFlight, Liveness

log = logging.getLogger(__name__)

#: Longest wait for the last outcomes to reach Redis at shutdown.
FINAL_FLUSH_TIMEOUT_S = 10.0


class WorkerCrashed(Exception):
    """One of the worker's loops died of an unexpected error; the process must exit non-zero."""


def make_worker_id() -> str:
    """``<host>-<pid>-<random>``: unique per process, readable in logs and task records."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class Worker:
    """One worker process's engine."""

    def __init__(
        self,
        settings: WorkerSettings,
        registry: Registry,
        *,
        broker: Broker | None = None,
        middleware: list[Middleware] | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id or make_worker_id()
        self.broker = broker or Broker.from_settings(settings)
        self.chain = MiddlewareChain(default_middleware() if middleware is None else middleware)
        self.threads = ThreadPoolExecutor(settings.sync_threads, thread_name_prefix="handler")
        self.http = handler_client(settings)
        self.env = ExecutionEnv(registry, settings, self.http, self.threads)
        self.inflight = InFlight(settings.concurrency)
        self.liveness = Liveness(settings.stall_timeout_s)
        lease_ms = int(settings.lease_s * 1000)
        self.finisher = Finisher(
            self.broker,
            self.worker_id,
            task_ttl_s=settings.task_ttl_s,
            dead_ttl_s=settings.dead_ttl_s,
        )
        self.fetcher = Fetcher(
            self.broker,
            self.worker_id,
            settings.queues,
            self.inflight,
            self.liveness,
            self._start,
            batch=settings.fetch_batch,
            lease_ms=lease_ms,
            block_ms=settings.block_ms,
        )
        self.heartbeat = Heartbeat(
            self.broker,
            self.worker_id,
            settings.queues,
            self.inflight,
            self.finisher,
            lease_ms=lease_ms,
            interval_s=settings.heartbeat_interval_s,
        )
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Begin graceful shutdown (signal handlers call this)."""
        if not self._stop.is_set():
            log.info("shutdown requested: no new tasks; %d in flight", len(self.inflight.running))
        self.liveness.stopping = True
        self.fetcher.stopping = True
        self.inflight.close()
        self._stop.set()

    def _start(self, task: FetchedTask) -> None:
        attempt = Attempt(task)
        self.inflight.add(attempt)
        attempt.start(self.env, self.chain, self._done)

    def _done(self, attempt: Attempt, outcome: Outcome | None) -> None:
        # Once no longer in flight the lease is not extended: an unrecorded task reruns; a
        # submitted outcome keeps it held (the finisher's held_ids) until it is recorded.
        self.inflight.remove(attempt)
        if outcome is not None:
            self.finisher.submit(attempt.task.queue, outcome)

    async def run(self, *, burst: bool = False) -> None:
        """Work until :meth:`request_stop` (or, in burst mode, until the queues are empty)."""
        log.info(
            "worker %s on queues %s, concurrency %d",
            self.worker_id,
            ",".join(self.settings.queues),
            self.settings.concurrency,
        )
        log.info("handler HTTP calls may reach %s", self.http.egress_policy.describe())
        background = [
            asyncio.create_task(self.liveness.tick(), name="tick"),
            asyncio.create_task(self.finisher.run(), name="finisher"),
            asyncio.create_task(self.heartbeat.run(), name="heartbeat"),
        ]
        fetching = asyncio.create_task(self.fetcher.run(), name="fetcher")
        waits: list[asyncio.Task[object]] = [asyncio.create_task(self._stop.wait())]
        if burst:
            waits.append(asyncio.create_task(self.fetcher.drained.wait()))
        # Any loop ending on its own is a crash: stop, and say so, rather than linger half-alive.
        supervised = [fetching, *background]
        done, _ = await asyncio.wait([*waits, *supervised], return_when=asyncio.FIRST_COMPLETED)
        crashed = [t for t in done if t in supervised and not t.cancelled() and t.exception()]
        for task in crashed:
            log.error("%s loop crashed", task.get_name(), exc_info=task.exception())
        self.request_stop()
        try:
            await self._shutdown(fetching)
        finally:
            for task in [*background, *waits]:
                task.cancel()
            await asyncio.gather(*background, *waits, return_exceptions=True)
            await self.close()
        if crashed:
            raise WorkerCrashed(f"{crashed[0].get_name()} loop crashed") from crashed[0].exception()

    async def _shutdown(self, fetching: asyncio.Task[None]) -> None:
        if self.fetcher.waiting:
            fetching.cancel()  # a blocked XREAD holds no task; no need to sit out block_ms
        await asyncio.gather(fetching, return_exceptions=True)
        handles = [r.handle for r in self.inflight.running.values() if r.handle is not None]
        if handles:
            _, late = await asyncio.wait(handles, timeout=self.settings.shutdown_grace_s)
            if late:
                log.warning("grace period over: giving back %d task(s)", len(late))
                for attempt in list(self.inflight.running.values()):
                    attempt.interrupt("shutdown")
                _, stubborn = await asyncio.wait(late, timeout=STOP_TIMEOUT_S)
                self._give_back_stubborn(stubborn)
        if not await self.finisher.drain(FINAL_FLUSH_TIMEOUT_S):
            log.error("could not record every outcome; those tasks will run again after lease")
        log.info("worker %s stopped", self.worker_id)

    def _give_back_stubborn(self, handles: set[asyncio.Task[Outcome | None]]) -> None:
        """Give back attempts whose handler ignores cancellation, so shutdown still ends."""
        for attempt in list(self.inflight.running.values()):
            if attempt.handle in handles:
                log.error("handler ignored cancellation", extra={"task_id": attempt.task.id})
                attempt.give_up_waiting(self._done)

    async def close(self) -> None:
        """Release connections and threads."""
        await self.http.aclose()
        self.threads.shutdown(wait=False, cancel_futures=True)
        await self.broker.close()
