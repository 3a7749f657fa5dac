"""``/v1/queues``: depths and counters."""

from __future__ import annotations

from fastapi import APIRouter

from taskforge.broker.admin import queue_stats
from taskforge.errors import TaskForgeError
from taskforge.problems import Problem
from taskforge_api.deps import BrokerDep
from taskforge_api.schemas import QueueList, QueueStatsOut

router = APIRouter(prefix="/v1/queues", tags=["queues"])


class QueueNotFound(TaskForgeError):
    """No task was ever enqueued on this queue."""

    status = 404
    problem_type = "queue-not-found"


async def all_stats(broker: BrokerDep) -> list[QueueStatsOut]:
    """Stats of every known queue."""
    return [
        QueueStatsOut.model_validate(await queue_stats(broker, q), from_attributes=True)
        for q in await broker.queues()
    ]


@router.get("", response_model=QueueList, responses={503: {"model": Problem}}, summary="Queues")
async def list_queues(broker: BrokerDep) -> QueueList:
    """Every queue that ever received a task, with depths per state and counters."""
    return QueueList(queues=await all_stats(broker))


@router.get(
    "/{queue}",
    response_model=QueueStatsOut,
    responses={404: {"model": Problem}, 503: {"model": Problem}},
    summary="One queue",
)
async def read_queue(queue: str, broker: BrokerDep) -> QueueStatsOut:
    """Depths per state, counters and oldest waiting task of one queue."""
    if queue not in await broker.queues():
        raise QueueNotFound(f"queue {queue!r} has never received a task")
    return QueueStatsOut.model_validate(await queue_stats(broker, queue), from_attributes=True)
