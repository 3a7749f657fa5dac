"""``/v1/dlq``: list (paginated, filtered), requeue one or many, purge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from taskforge.broker import Broker, DeadLetterPage
from taskforge.broker.admin import dead_letters, purge_dead, requeue_dead, requeue_dead_task
from taskforge.errors import InvalidTask
from taskforge.models import DeadReason, TaskRecord
from taskforge.problems import Problem
from taskforge_api.deps import BrokerDep
from taskforge_api.jsonbody import CheckedJsonRoute
from taskforge_api.schemas import CountResult, DeadLetterList

router = APIRouter(prefix="/v1/dlq", tags=["dead-letter queue"], route_class=CheckedJsonRoute)

QueueFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem},
    422: {"model": Problem},
    503: {"model": Problem},
}


@dataclass(frozen=True, slots=True)
class DeadSelection:
    """Which queues a bulk DLQ action touches: one, or explicitly all (``queue`` None)."""

    queue: str | None


#: Query parameters each bulk action takes; any other is refused, never silently ignored
#: (a purge given ``limit`` would otherwise delete everything it selects).
_BULK_PARAMS = {"POST": frozenset({"queue", "all", "limit"}), "DELETE": frozenset({"queue", "all"})}


async def dead_selection(
    request: Request,
    queue: QueueFilter = None,
    everything: Annotated[
        bool, Query(alias="all", description="Act on every queue; required without queue.")
    ] = False,
) -> DeadSelection:
    """``queue`` or ``all=true``, from the query string as ``GET /v1/dlq`` takes it.

    Raises:
        InvalidTask: neither or both are given, an unknown parameter (such as a listing
            filter, which these actions do not apply) is, or a body is sent (an older client's
            body-borne selection must not be replaced silently by the query's).
    """
    unknown = sorted(set(request.query_params) - _BULK_PARAMS[request.method])
    if unknown:
        raise InvalidTask(f"unknown query parameters {unknown}: give queue or all=true")
    if await request.body():
        raise InvalidTask("these actions take no body: give queue or all=true in the query")
    if (queue is None) == (not everything):
        raise InvalidTask("give queue=<name> or all=true (every queue) in the query, not both")
    return DeadSelection(queue)


def _ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _parse_cursor(cursor: str | None, queues: list[str]) -> tuple[int, int]:
    """``<queue>:<offset>`` → (index of the queue in ``queues``, offset)."""
    if not cursor:
        return 0, 0
    queue, _, offset = cursor.rpartition(":")
    if queue not in queues or not offset.isdigit():
        raise InvalidTask(f"invalid cursor {cursor!r}")
    return queues.index(queue), int(offset)


async def list_dead(
    broker: Broker,
    *,
    queue: str | None,
    limit: int,
    cursor: str | None = None,
    task_type: str | None = None,
    reason: DeadReason | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> DeadLetterList:
    """A page of dead tasks across one or every queue, in queue order then time of death."""
    queues = [queue] if queue else await broker.queues()
    index, offset = _parse_cursor(cursor, queues)

    async def page_of(name: str, start: int, size: int) -> DeadLetterPage:
        return await dead_letters(
            broker,
            name,
            cursor=start,
            limit=size,
            task_type=task_type,
            reason=reason,
            since_ms=_ms(since),
            until_ms=_ms(until),
        )

    items: list[TaskRecord] = []
    total, next_cursor = 0, None
    for position, name in enumerate(queues):
        if position < index or len(items) >= limit:
            total += (await page_of(name, 0, 0)).total
            continue
        page = await page_of(name, offset, limit - len(items))
        offset = 0
        total += page.total
        items.extend(page.items)
        if page.next_cursor is not None and next_cursor is None:
            next_cursor = f"{name}:{page.next_cursor}"
        elif len(items) >= limit and next_cursor is None and position + 1 < len(queues):
            next_cursor = f"{queues[position + 1]}:0"
    return DeadLetterList(items=items, total=total, next_cursor=next_cursor)


@router.get("", response_model=DeadLetterList, responses=_ERRORS, summary="List dead tasks")
async def read_dlq(
    broker: BrokerDep,
    queue: QueueFilter = None,
    task_type: Annotated[str | None, Query(max_length=100)] = None,
    reason: DeadReason | None = None,
    since: Annotated[datetime | None, Query(description="Died at or after.")] = None,
    until: Annotated[datetime | None, Query(description="Died at or before.")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeadLetterList:
    """Dead tasks, oldest death first, with their last error, reason and event log."""
    return await list_dead(
        broker,
        queue=queue,
        limit=limit,
        cursor=cursor,
        task_type=task_type,
        reason=reason,
        since=since,
        until=until,
    )


@router.post(
    "/{task_id}/requeue", response_model=CountResult, responses=_ERRORS, summary="Requeue one"
)
async def requeue_one(task_id: str, broker: BrokerDep) -> CountResult:
    """Put one dead task back on its queue with a fresh retry budget."""
    await requeue_dead_task(broker, task_id)
    return CountResult(count=1)


@router.post("/requeue", response_model=CountResult, responses=_ERRORS, summary="Requeue many")
async def requeue_many(
    broker: BrokerDep,
    selection: Annotated[DeadSelection, Depends(dead_selection)],
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> CountResult:
    """Requeue up to ``limit`` dead tasks of ``queue`` (or of every queue with ``all=true``)."""
    queues = [selection.queue] if selection.queue else await broker.queues()
    count = 0
    for queue in queues:
        count += await requeue_dead(broker, queue, [], limit=limit - count)
        if count >= limit:
            break
    return CountResult(count=count)


async def purge(broker: Broker, queue: str | None) -> CountResult:
    """Delete the dead tasks of one queue, or of every queue."""
    queues = [queue] if queue else await broker.queues()
    return CountResult(count=sum([await purge_dead(broker, q) for q in queues]))


@router.delete("", response_model=CountResult, responses=_ERRORS, summary="Purge dead tasks")
async def delete_dlq(
    broker: BrokerDep, selection: Annotated[DeadSelection, Depends(dead_selection)]
) -> CountResult:
    """Delete the dead tasks of ``queue``, or of every queue with ``all=true``."""
    return await purge(broker, selection.queue)
