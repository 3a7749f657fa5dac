"""Tests for taskforge.middleware: symmetric hooks, contained failures, metrics."""

from __future__ import annotations

import logging
import uuid

import pytest
from prometheus_client import REGISTRY

from taskforge.broker.consume import FetchedTask, Outcome
from taskforge.middleware import (
    LoggingMiddleware,
    MetricsMiddleware,
    Middleware,
    MiddlewareChain,
    default_middleware,
)
from taskforge.models import DeadReason

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make_task(queue: str = "default", type_: str = "demo.echo") -> FetchedTask:
    return FetchedTask(
        id=f"{queue}.{uuid.uuid4().hex}",
        queue=queue,
        type=type_,
        payload_json="{}",
        attempts=1,
        max_retries=None,
        backoff_json="",
        timeout_s=None,
        traceparent=TRACEPARENT,
    )


class Recording(Middleware):
    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name = name
        self.log = log

    def before_task(self, task: FetchedTask) -> None:
        self.log.append(("before", self.name))

    def after_task(self, task: FetchedTask, outcome: Outcome, duration_s: float) -> None:
        self.log.append(("after", self.name))
        assert duration_s >= 0


class Broken(Middleware):
    def before_task(self, task: FetchedTask) -> None:
        raise RuntimeError("before hook broke")

    def after_task(self, task: FetchedTask, outcome: Outcome, duration_s: float) -> None:
        raise RuntimeError("after hook broke")


def test_after_hooks_run_in_reverse_order() -> None:
    log: list[tuple[str, str]] = []
    chain = MiddlewareChain([Recording("a", log), Recording("b", log)])
    task = make_task()
    started = chain.before(task)
    chain.after(task, Outcome(task.id, "succeeded"), started)
    assert log == [("before", "a"), ("before", "b"), ("after", "b"), ("after", "a")]


def test_base_middleware_hooks_are_no_ops(caplog: pytest.LogCaptureFixture) -> None:
    """A middleware may override only the hook it needs: the inherited one does nothing."""
    log: list[tuple[str, str]] = []

    class BeforeOnly(Middleware):
        def before_task(self, task: FetchedTask) -> None:
            log.append(("before", task.id))

    base = Middleware()
    task = make_task()
    outcome = Outcome(task.id, "succeeded")
    assert base.before_task(task) is None
    assert base.after_task(task, outcome, 0.0) is None
    chain = MiddlewareChain([base, BeforeOnly()])
    with caplog.at_level(logging.DEBUG, logger="taskforge.middleware"):
        chain.after(task, outcome, chain.before(task))
    # A base hook that raised (say NotImplementedError) would be contained but logged here.
    assert [r for r in caplog.records if r.name == "taskforge.middleware"] == []
    assert log == [("before", task.id)]


@pytest.mark.parametrize("broken_at", [0, 1, 2])
def test_a_failing_hook_is_logged_and_contained(
    caplog: pytest.LogCaptureFixture, broken_at: int
) -> None:
    log: list[tuple[str, str]] = []
    middleware: list[Middleware] = [Recording("a", log), Recording("b", log)]
    middleware.insert(broken_at, Broken())
    chain = MiddlewareChain(middleware)
    task = make_task()
    outcome = Outcome(task.id, "retry", "boom", delay_ms=1000)
    with caplog.at_level(logging.ERROR, logger="taskforge.middleware"):
        started = chain.before(task)
        chain.after(task, outcome, started)
    # The others still ran, in order, and the chain returned normally.
    assert log == [("before", "a"), ("before", "b"), ("after", "b"), ("after", "a")]
    messages = [r.getMessage() for r in caplog.records if r.name == "taskforge.middleware"]
    assert messages == [
        "middleware Broken.before_task failed",
        "middleware Broken.after_task failed",
    ]
    assert all(r.exc_info is not None for r in caplog.records if r.name == "taskforge.middleware")


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_middleware_counts_starts_and_outcomes() -> None:
    queue = f"q-{uuid.uuid4().hex[:10]}"
    task = make_task(queue, "demo.metrics")
    labels = {"queue": queue, "task": "demo.metrics"}
    chain = MiddlewareChain([MetricsMiddleware()])

    started = chain.before(task)
    assert sample("taskforge_tasks_started_total", labels) == 1.0
    chain.after(task, Outcome(task.id, "succeeded"), started)
    started = chain.before(task)
    chain.after(task, Outcome(task.id, "retry", "x", delay_ms=10), started)

    assert sample("taskforge_tasks_started_total", labels) == 2.0
    assert sample("taskforge_tasks_finished_total", {**labels, "outcome": "succeeded"}) == 1.0
    assert sample("taskforge_tasks_finished_total", {**labels, "outcome": "retry"}) == 1.0
    assert sample("taskforge_tasks_finished_total", {**labels, "outcome": "dead"}) == 0.0
    count = sample("taskforge_task_duration_seconds_count", {**labels, "outcome": "succeeded"})
    assert count == 1.0


def test_logging_middleware_warns_on_failure_with_context(caplog: pytest.LogCaptureFixture) -> None:
    task = make_task("emails", "email.send")
    with caplog.at_level(logging.INFO, logger="taskforge.middleware"):
        LoggingMiddleware().after_task(
            task,
            Outcome(task.id, "dead", "SMTP said no", dead_reason=DeadReason.NON_RETRYABLE),
            0.25,
        )
    (record,) = [r for r in caplog.records if r.name == "taskforge.middleware"]
    assert record.levelno == logging.WARNING
    assert "email.send dead" in record.getMessage()
    assert "SMTP said no" in record.getMessage()
    assert record.__dict__["task_id"] == task.id
    assert record.__dict__["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert record.__dict__["outcome"] == "dead"


def test_logging_middleware_is_quiet_on_success(caplog: pytest.LogCaptureFixture) -> None:
    task = make_task()
    with caplog.at_level(logging.INFO, logger="taskforge.middleware"):
        LoggingMiddleware().after_task(task, Outcome(task.id, "succeeded", "{}"), 0.01)
    assert [r for r in caplog.records if r.name == "taskforge.middleware"] == []


def test_default_middleware_is_metrics_then_logging() -> None:
    assert [type(m) for m in default_middleware()] == [MetricsMiddleware, LoggingMiddleware]
