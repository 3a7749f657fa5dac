"""``/v1/queues``: depths and counters, a page of queues at a time."""

from __future__ import annotations

import bisect
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from taskforge.broker.admin import queue_stats, queue_stats_many
from taskforge.errors import TaskForgeError
from taskforge.keys import QUEUE_NAME_RE
from taskforge.problems import Problem
from taskforge_api.deps import BrokerDep
from taskforge_api.schemas import QueueList, QueueStatsOut

router = APIRouter(prefix="/v1/queues", tags=["queues"])

_ERRORS: dict[int | str, dict[str, object]] = {422: {"model": Problem}, 503: {"model": Problem}}


class QueueNotFound(TaskForgeError):
    """No live queue has this name (never used, or reaped once empty and idle)."""

    status = 404
    problem_type = "queue-not-found"


class QueuePage(QueueList):
    """Live queues in name order; pass ``next_cursor`` as ``cursor`` for the next page."""

    total: int = Field(description="Live queues in all.")
    next_cursor: str | None = Field(description="Null on the last page.")


@router.get("", response_model=QueuePage, responses=_ERRORS, summary="Queues")
async def list_queues(
    broker: BrokerDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Queues per page.")] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=QUEUE_NAME_RE.pattern, description="The previous page's next_cursor."),
    ] = None,
) -> QueuePage:
    """Live queues by name, with depths per state and counters (read for this page only)."""
    names = await broker.queues()
    start = bisect.bisect_right(names, cursor) if cursor else 0
    page = names[start : start + limit]
    more = start + limit < len(names)
    stats = await queue_stats_many(broker, page)
    return QueuePage(
        queues=[QueueStatsOut.model_validate(s, from_attributes=True) for s in stats],
        total=len(names),
        next_cursor=page[-1] if more and page else None,
    )


@router.get(
    "/{queue}",
    response_model=QueueStatsOut,
    responses={404: {"model": Problem}, 503: {"model": Problem}},
    summary="One queue",
)
async def read_queue(queue: str, broker: BrokerDep) -> QueueStatsOut:
    """Depths per state, counters and oldest waiting task of one queue."""
    if not await broker.has_queue(queue):
        raise QueueNotFound(f"queue {queue!r} does not exist (or was reaped once empty)")
    return QueueStatsOut.model_validate(await queue_stats(broker, queue), from_attributes=True)
