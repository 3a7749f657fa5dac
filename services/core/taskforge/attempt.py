"""One attempt of a fetched task, run the same way by the worker and by ``consume-once``.

The runner (worker or api) fetches, keeps the lease alive and records outcomes its own way
(the worker batches both); what an attempt *is* lives here once: the middleware around
:func:`~taskforge.execution.execute`, why a runner stopped it (a cancel request, a lost lease,
a runner going away) and the outcome each reason leaves, and the rule that an attempt always
tells its runner it is over, exactly once, so the runner stops holding its lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from opentelemetry.trace import Span

from taskforge import metrics, tracing
from taskforge.broker.connection import Broker
from taskforge.broker.consume import FetchedTask, Outcome, heartbeat
from taskforge.errors import RedisUnavailable
from taskforge.execution import ExecutionEnv, execute
from taskforge.middleware import MiddlewareChain

log = logging.getLogger(__name__)

#: Why a runner stopped an attempt: its task was asked to cancel; its runner is going away
#: (worker shutdown, consume-once client gone) and gives the task back; its lease was lost.
StopReason = Literal["cancel", "shutdown", "lost"]

#: Longest wait for an interrupted handler to return before its task is given back anyway.
STOP_TIMEOUT_S = 5.0

#: Told once when an attempt ends: the outcome to record, or None when there is none to record
#: (lease lost: the task's new owner decides; or the attempt was cancelled from outside).
Done = Callable[["Attempt", Outcome | None], None]


@dataclass(slots=True)
class Attempt:
    """One attempt in progress and, once its runner interrupts it, why."""

    task: FetchedTask
    handle: asyncio.Task[Outcome | None] | None = None
    stop_reason: StopReason | None = None
    #: Set once its runner was told the attempt is over; it is never told twice.
    settled: bool = False
    #: Who :meth:`start` tells of the ending.
    done: Done | None = None
    #: Set by :meth:`run` as its first step.
    began: bool = False

    def interrupt(self, reason: StopReason) -> None:
        """Cancel the attempt's coroutine, remembering why for its outcome (first reason wins)."""
        if self.handle is not None and not self.handle.done() and self.stop_reason is None:
            self.stop_reason = reason
            self.handle.cancel()
            if not self.began and self.done is not None and not self.settled:
                # Cancelled before its first step, the coroutine never runs its body, nor the
                # telling in it: tell the runner now, or it would hold the attempt forever.
                self.settled = True
                self.done(self, self.outcome_for(reason))

    def outcome_for(self, reason: StopReason) -> Outcome | None:
        """What an attempt stopped for ``reason`` leaves to record."""
        task = self.task
        if reason == "cancel":
            return Outcome(task.id, "cancelled", "cancelled while running", attempt=task.attempts)
        if reason == "shutdown":
            return Outcome(task.id, "giveback", attempt=task.attempts)
        return None  # lease lost: another runner owns the task now; record nothing

    def start(self, env: ExecutionEnv, chain: MiddlewareChain, done: Done) -> None:
        """Run the attempt as its own asyncio task (:attr:`handle`); ``done`` hears of its
        ending once, even when :meth:`interrupt` stops it before its first step."""
        self.done = done
        self.handle = asyncio.create_task(self.run(env, chain, done), name=self.task.id)

    async def run(
        self, env: ExecutionEnv, chain: MiddlewareChain, done: Done | None = None
    ) -> Outcome | None:
        """Run the task once under the middleware; ``done`` hears of every ending, once.

        Returns the outcome to record (also given to ``done``). A cancellation that did not
        come through :meth:`interrupt` propagates, after ``done`` heard None.
        """
        self.began = True
        task = self.task
        # Tracing off costs this check and one after the handler: no call, no object.
        span = None if not tracing.enabled() else tracing.start_attempt(
            task.id, task.queue, task.type, task.attempts, task.traceparent, task.deliveries
        )  # fmt: skip
        outcome: Outcome | None = None
        try:
            started = chain.before(task)
            if span is None:
                outcome = await execute(task, env)
            else:
                outcome = await tracing.within(span, execute(task, env))
        except asyncio.CancelledError:
            if self.stop_reason is None:
                raise
            outcome = self.outcome_for(self.stop_reason)
        except Exception:  # a bug in execute: record nothing, the lease lapses and it reruns
            log.exception("attempt failed outside its handler", extra={"task_id": task.id})
        finally:
            try:
                if outcome is not None and span is None:
                    chain.after(task, outcome, started)  # no no-op `with`: 0.4 us per task
                elif outcome is not None:
                    with tracing.activated(span):  # the after-hooks' log lines name it
                        chain.after(task, outcome, started)
            finally:
                if span is not None:
                    end_span(span, outcome, self.stop_reason)
                if done is not None and not self.settled:
                    # Even out of a cancellation: the runner must let go of the lease.
                    self.settled = True
                    done(self, outcome)
        return outcome

    def give_up_waiting(self, done: Done) -> None:
        """Give the task back now, for a handler that ignores cancellation; whatever the
        attempt does later is not recorded (its outcome would be a second one)."""
        if not self.settled:
            self.settled = True
            done(self, self.outcome_for("shutdown"))


def end_span(span: Span, outcome: Outcome | None, stop_reason: StopReason | None) -> None:
    """End an attempt's span with what it came to; an attempt with nothing to record ended
    because its lease was lost (or by a bug, logged above)."""
    if outcome is None:
        tracing.end_attempt(span, "lease_lost" if stop_reason == "lost" else "abandoned", {})
        return
    attributes: dict[str, str | int] = {}
    if outcome.kind in ("retry", "dead"):
        attributes["error.type"] = tracing.error_type(outcome.detail)
    if outcome.kind == "retry":
        attributes["taskforge.retry.delay_ms"] = outcome.delay_ms or 0
    if outcome.dead_reason is not None:
        attributes["taskforge.task.dead_reason"] = str(outcome.dead_reason.value)
    tracing.end_attempt(span, outcome.kind, attributes)


def act_on_heartbeat(
    attempts: dict[str, Attempt], lost: Iterable[str], cancel: Iterable[str], queue: str
) -> None:
    """Stop the attempts a heartbeat reported as lost or asked to cancel."""
    for task_id in lost:
        attempt = attempts.get(task_id)
        if attempt is not None:
            metrics.LEASES_LOST.labels(queue).inc()
            log.warning("lease lost, abandoning attempt", extra={"task_id": task_id})
            attempt.interrupt("lost")
    for task_id in cancel:
        attempt = attempts.get(task_id)
        if attempt is not None:
            log.info("cancellation requested", extra={"task_id": task_id})
            attempt.interrupt("cancel")


async def watch_lease(
    broker: Broker, attempt: Attempt, runner_id: str, lease_ms: int, interval_s: float
) -> None:
    """Heartbeat one attempt's lease until cancelled, stopping it when lost or cancelled.

    For a runner with a single attempt (``consume-once``); the worker beats all of its leases
    per queue in one call and hands the replies to :func:`act_on_heartbeat` the same way.
    """
    task = attempt.task
    while True:
        await asyncio.sleep(interval_s)
        try:
            lost, cancel = await heartbeat(broker, task.queue, runner_id, [task.id], lease_ms)
        except RedisUnavailable as exc:
            log.warning("heartbeat failed, retrying: %s", exc)
            continue
        act_on_heartbeat({task.id: attempt}, lost, cancel, task.queue)
