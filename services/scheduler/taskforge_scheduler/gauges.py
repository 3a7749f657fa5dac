"""Queue gauges with a bounded label set: the busiest queues by name, the rest as ``_other``.

Thousands of queues would otherwise mean thousands of series per metric on every scrape (and
in every Prometheus). The labelled set is chosen again at each gauge pass; the series of a
queue that leaves it are removed, so the set never grows past ``metrics_max_queues`` + 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.metrics import MetricWrapperBase

from taskforge import metrics
from taskforge.broker.admin import QueueStats, busiest
from taskforge.keys import OTHER_QUEUES

#: States of ``taskforge_queue_depth``.
STATES = ("queued", "scheduled", "running", "dead")


class QueueGauges:
    """Exports the scheduler's per-queue gauges for at most ``max_queues`` named queues."""

    def __init__(self, max_queues: int) -> None:
        self.max_queues = max_queues
        #: Queues exported under their own name since the last pass.
        self.labelled: set[str] = set()
        #: Whether the last pass had more queues than labels.
        self.overflow = False
        self._events: set[tuple[str, str]] = set()
        #: Queues whose counters got their own label since the last pass.
        self._counted: set[str] = set()

    def label(self, queue: str) -> str:
        """The ``queue`` label value for ``queue``'s counters.

        A queue gets its own name when it was labelled at the last pass, or when every queue
        was (a queue newer than the last pass then has its name too).
        """
        if queue in self.labelled or not self.overflow:
            self._counted.add(queue)
            return queue
        return OTHER_QUEUES

    def export(self, stats: Sequence[QueueStats]) -> None:
        """Set the gauges from ``stats`` (every live queue) and drop series gone out of set."""
        top, other = busiest(stats, self.max_queues)
        rows = [*top, other] if other else top
        counters = {row.queue: _counters(row) for row in rows}
        events = {(queue, event) for queue, counted in counters.items() for event in counted}
        shown = {row.queue for row in rows}
        for queue in (self.labelled | self._counted | {OTHER_QUEUES}) - shown:
            self._remove(queue)
        self._counted = set()
        for queue, event in self._events - events:
            if queue in shown:
                metrics.QUEUE_EVENTS.remove(queue, event)
        for row in rows:
            for state in STATES:
                metrics.QUEUE_DEPTH.labels(row.queue, state).set(getattr(row, state))
            metrics.QUEUE_OLDEST_AGE.labels(row.queue).set(row.oldest_queued_age_s)
            for event, value in counters[row.queue].items():
                metrics.QUEUE_EVENTS.labels(row.queue, event).set(value)
        self._events = events
        self.labelled = {row.queue for row in top}
        self.overflow = other is not None

    def _remove(self, queue: str) -> None:
        # remove() raises KeyError for a label set never exported; a stale one may be either.
        removals: list[tuple[MetricWrapperBase, tuple[str, ...]]] = [
            (metrics.QUEUE_DEPTH, (queue, state)) for state in STATES
        ]
        removals += [(metrics.QUEUE_OLDEST_AGE, (queue,))]
        removals += [(metrics.QUEUE_EVENTS, key) for key in self._events if key[0] == queue]
        removals += [(metrics.PROMOTED, (queue,)), (metrics.RECLAIMED, (queue,))]
        for metric, labels in removals:
            try:
                metric.remove(*labels)
            except KeyError:
                continue


def _counters(row: QueueStats) -> dict[str, int]:
    # Every counter from 0, not from its first move: increase() over a series born at 1 (a
    # queue's first dead task) is 0, and the alert on it would never fire.
    return {**dict.fromkeys(metrics.QUEUE_EVENT_NAMES, 0), **row.counters}
