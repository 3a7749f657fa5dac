"""Metrics only a scheduler exports (see taskforge_worker.metrics)."""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

TICK_DURATION = Histogram(
    "taskforge_scheduler_tick_duration_seconds", "Time of one scheduler pass over all queues."
)
LAST_TICK = Gauge(
    "taskforge_scheduler_last_tick_timestamp_seconds", "When the last scheduler pass finished."
)
