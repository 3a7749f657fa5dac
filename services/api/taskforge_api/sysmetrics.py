"""System metrics as JSON for API users: totals, per-second rates and depths per queue.

Totals cover every live queue; depths are listed for the busiest ``metrics_max_queues`` ones,
the others summed under ``_other``, so the answer stays small however many queues exist.
"""

from __future__ import annotations

import time
from collections import Counter

from taskforge.broker import Broker
from taskforge.broker.admin import busiest, queue_stats_many
from taskforge_api.schemas import QueueStatsOut, SystemMetrics

_STATES = ("queued", "scheduled", "running", "dead")


class RateTracker:
    """Rates from the difference between this sample and this replica's previous one."""

    def __init__(self) -> None:
        self._previous: tuple[float, dict[str, int]] | None = None

    def rates(self, totals: dict[str, int]) -> dict[str, float] | None:
        """Per-second rates since the previous call (None on the first call)."""
        now = time.monotonic()
        previous, self._previous = self._previous, (now, dict(totals))
        if previous is None or now - previous[0] <= 0:
            return None
        elapsed = now - previous[0]
        return {k: max(0, v - previous[1].get(k, 0)) / elapsed for k, v in totals.items()}


async def system_metrics(
    broker: Broker, tracker: RateTracker, *, max_queues: int = 100
) -> SystemMetrics:
    """Counters and depths of every queue, summed, with rates; the busiest queues listed."""
    stats = await queue_stats_many(broker, await broker.queues())
    counters: Counter[str] = Counter()
    now: Counter[str] = Counter()
    for queue in stats:
        counters.update(queue.counters)
        now.update({f"{state}_now": getattr(queue, state) for state in _STATES})
    top, other = busiest(stats, max_queues)
    listed = [*top, other] if other else top
    return SystemMetrics(
        queues={q.queue: QueueStatsOut.model_validate(q, from_attributes=True) for q in listed},
        totals={**counters, **now},
        rates_per_s=tracker.rates(dict(counters)),
    )
