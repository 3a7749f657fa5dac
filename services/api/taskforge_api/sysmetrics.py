"""System metrics as JSON for API users: totals, per-second rates and depths per queue."""

from __future__ import annotations

import time
from collections import Counter

from taskforge.broker import Broker
from taskforge_api.routes.queues import all_stats
from taskforge_api.schemas import SystemMetrics


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


async def system_metrics(broker: Broker, tracker: RateTracker) -> SystemMetrics:
    """Depths and counters of every queue, summed, with rates."""
    stats = await all_stats(broker)
    totals: Counter[str] = Counter()
    for queue in stats:
        totals.update(queue.counters)
        totals.update(
            {
                f"{state}_now": getattr(queue, state)
                for state in ("queued", "scheduled", "running", "dead")
            }
        )
    counters = {k: v for k, v in totals.items() if not k.endswith("_now")}
    return SystemMetrics(
        queues={q.queue: q for q in stats},
        totals=dict(totals),
        rates_per_s=tracker.rates(counters),
    )
