"""Settings of the scheduler service (``taskforge-scheduler``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from taskforge.settings.base import CoreSettings


class SchedulerSettings(CoreSettings):
    """How often the scheduler promotes, reclaims and measures, and in what batch sizes."""

    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9103
    #: Due tasks are promoted within one tick of their due time.
    tick_s: Annotated[float, Field(gt=0, le=60)] = 0.5
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    gauge_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    #: The queue registry is re-read this often to pick up new queues.
    queue_refresh_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    #: A queue left empty with no enqueue for this long leaves the registry (freeing a place
    #: under the queue limit and its metric series); its next enqueue registers it again.
    queue_idle_ttl_s: Annotated[float, Field(ge=1, le=365 * 86_400)] = 3600.0
