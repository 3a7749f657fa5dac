"""Metrics only a worker exports (an unlabelled metric is exported as soon as it is defined:
defined in taskforge.metrics, every service would export it, at 0)."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

TASKS_INFLIGHT = Gauge("taskforge_worker_inflight_tasks", "Attempts this worker is running.")
FETCH_BATCH = Histogram(
    "taskforge_worker_fetch_batch_size",
    "Tasks started per fetch round trip.",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500),
)
