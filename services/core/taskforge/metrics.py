"""Prometheus metrics. Names start with ``taskforge_``; labels stay bounded (no task ids)."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)


class Children(Generic[M]):
    """A metric's children by label values, each looked up once.

    ``labels()`` validates its arguments and takes a lock on every call; on the hot paths (one
    call per task or per request) the dictionary lookup here is several times cheaper. Label
    values stay bounded as everywhere (queues, task types, routes, outcomes).
    """

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._by_values: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        """The child for ``values``, in the metric's label order."""
        child = self._by_values.get(values)
        if child is None:
            child = self._by_values[values] = self.metric.labels(*values)
        return child


#: Buckets for task run time: sub-millisecond no-ops up to hour-long jobs.
DURATION_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
)  # fmt: skip

TASKS_STARTED = Counter(
    "taskforge_tasks_started_total", "Attempts started by workers.", ["queue", "task"]
)
TASKS_FINISHED = Counter(
    "taskforge_tasks_finished_total",
    "Attempts finished, by outcome (succeeded, retry, dead, cancelled, giveback).",
    ["queue", "task", "outcome"],
)
TASK_DURATION = Histogram(
    "taskforge_task_duration_seconds",
    "Run time of one attempt.",
    ["queue", "task", "outcome"],
    buckets=DURATION_BUCKETS_S,
)
LEASES_LOST = Counter(
    "taskforge_worker_leases_lost_total",
    "Attempts whose lease this worker lost (their result was dropped).",
    ["queue"],
)
REDIS_ERRORS = Counter(
    "taskforge_redis_errors_total", "Redis operations that failed to connect.", ["operation"]
)
PROMOTED = Counter(
    "taskforge_scheduler_promoted_total", "Due tasks moved to their stream.", ["queue"]
)
RECLAIMED = Counter(
    "taskforge_scheduler_reclaimed_total", "Tasks of dead workers put back.", ["queue"]
)
QUEUE_DEPTH = Gauge(
    "taskforge_queue_depth",
    "Tasks per queue and state (queued, scheduled, running, dead); exported by the scheduler.",
    ["queue", "state"],
)
QUEUE_OLDEST_AGE = Gauge(
    "taskforge_queue_oldest_task_age_seconds",
    "Age of the oldest task waiting in the queue; exported by the scheduler.",
    ["queue"],
)
#: The per-queue counters the scripts keep in Redis (``HINCRBY`` on the counters hash).
QUEUE_EVENT_NAMES = (
    "enqueued", "succeeded", "failed", "retried", "dead", "cancelled", "abandoned", "requeued",
)  # fmt: skip
QUEUE_EVENTS = Gauge(
    "taskforge_queue_events",
    "Per-queue lifetime counters kept in Redis (enqueued, succeeded, failed, retried, dead, "
    "cancelled, abandoned, requeued); use rate() on them like counters.",
    ["queue", "event"],
)
