"""Symmetric before/after hooks around every attempt (Dramatiq's middleware, made async-free).

After-hooks run in reverse order. A hook that raises is logged and contained: observability
must never lose a task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from taskforge import metrics
from taskforge.broker.consume import FetchedTask, Outcome
from taskforge.logs import trace_id_of

log = logging.getLogger(__name__)


class Middleware:
    """Base class: every hook is a no-op."""

    def before_task(self, task: FetchedTask) -> None:
        """Called before the handler runs."""

    def after_task(self, task: FetchedTask, outcome: Outcome, duration_s: float) -> None:
        """Called with the outcome, before it is recorded in Redis."""


class MetricsMiddleware(Middleware):
    """Counts attempts and times them."""

    def __init__(self) -> None:
        self._started = metrics.Children(metrics.TASKS_STARTED)
        self._finished = metrics.Children(metrics.TASKS_FINISHED)
        self._duration = metrics.Children(metrics.TASK_DURATION)

    def before_task(self, task: FetchedTask) -> None:
        """Count the start."""
        self._started(task.queue, task.type).inc()

    def after_task(self, task: FetchedTask, outcome: Outcome, duration_s: float) -> None:
        """Count the outcome and observe the duration."""
        self._finished(task.queue, task.type, outcome.kind).inc()
        self._duration(task.queue, task.type, outcome.kind).observe(duration_s)


class LoggingMiddleware(Middleware):
    """Logs failures with task and trace ids; successes only at debug level (hot path)."""

    def after_task(self, task: FetchedTask, outcome: Outcome, duration_s: float) -> None:
        """Log the attempt's outcome."""
        if outcome.kind == "succeeded" and not log.isEnabledFor(logging.DEBUG):
            return
        level = logging.DEBUG if outcome.kind == "succeeded" else logging.WARNING
        log.log(
            level,
            "task %s %s (attempt took %.3fs)%s",
            task.type,
            outcome.kind,
            duration_s,
            f": {outcome.detail}" if outcome.kind in ("retry", "dead") else "",
            extra={
                "task_id": task.id,
                "queue": task.queue,
                "task_type": task.type,
                "attempt": task.attempts,
                "trace_id": trace_id_of(task.traceparent),
                "outcome": outcome.kind,
            },
        )


class MiddlewareChain:
    """Runs hooks in order before, and in reverse order after."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        self.middleware = list(middleware)
        self._reversed = list(reversed(self.middleware))

    def before(self, task: FetchedTask) -> float:
        """Run before-hooks; returns the start time for :meth:`after`."""
        for mw in self.middleware:
            try:
                mw.before_task(task)
            except Exception:  # a broken hook must not lose the task; it is logged instead
                log.exception("middleware %s.before_task failed", type(mw).__name__)
        return time.perf_counter()

    def after(self, task: FetchedTask, outcome: Outcome, started: float) -> None:
        """Run after-hooks in reverse order."""
        duration_s = time.perf_counter() - started
        for mw in self._reversed:
            try:
                mw.after_task(task, outcome, duration_s)
            except Exception:  # a broken hook must not lose the task; it is logged instead
                log.exception("middleware %s.after_task failed", type(mw).__name__)


def default_middleware() -> list[Middleware]:
    """Metrics and logging, in that order."""
    return [MetricsMiddleware(), LoggingMiddleware()]
