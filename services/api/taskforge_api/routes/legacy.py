"""The original endpoints, kept with their original meaning, and ``consume-once``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from taskforge.broker.admin import get_task
from taskforge.models import MAX_IDEMPOTENCY_KEY_CHARS, TaskRecord
from taskforge.problems import Problem
from taskforge_api.consume import consume_once
from taskforge_api.deps import BrokerDep, ClientScopeDep, SettingsDep
from taskforge_api.enqueueing import enqueue_specs
from taskforge_api.jsonbody import CheckedJsonRoute
from taskforge_api.routes.dlq import list_dead, purge
from taskforge_api.schemas import (
    ConsumeOnceResult,
    CountResult,
    DeadLetterList,
    LegacyEnqueued,
    SystemMetrics,
    TaskCreate,
)
from taskforge_api.sysmetrics import system_metrics

router = APIRouter(tags=["original endpoints"], route_class=CheckedJsonRoute)

QueueParam = Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
OptionalQueue = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem},
    409: {"model": Problem},
    422: {"model": Problem},
    503: {"model": Problem},
}


@router.post("/enqueue", response_model=LegacyEnqueued, responses=_ERRORS, summary="Enqueue")
async def enqueue(
    body: TaskCreate,
    broker: BrokerDep,
    settings: SettingsDep,
    scope: ClientScopeDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS),
    ] = None,
    traceparent: Annotated[str | None, Header(max_length=256)] = None,
) -> LegacyEnqueued:
    """Enqueue one task (as ``POST /v1/tasks``), answering ``{task_id, status}``."""
    (created,) = await enqueue_specs(
        broker, settings, [body.to_spec(idempotency_key, traceparent)], scope=scope
    )
    return LegacyEnqueued(task_id=created.id, status=created.state)


@router.get("/tasks/{task_id}", response_model=TaskRecord, responses=_ERRORS, summary="Status")
async def task_status(task_id: str, broker: BrokerDep) -> TaskRecord:
    """A task's record (as ``GET /v1/tasks/{id}``)."""
    return await get_task(broker, task_id)


@router.get("/metrics", response_model=SystemMetrics, responses=_ERRORS, summary="Metrics")
async def metrics_json(request: Request, broker: BrokerDep, settings: SettingsDep) -> SystemMetrics:
    """Totals, rates and depths as JSON, the busiest queues listed (Prometheus scrapes the
    metrics port)."""
    return await system_metrics(
        broker, request.app.state.rates, max_queues=settings.metrics_max_queues
    )


@router.post(
    "/consume-once", response_model=ConsumeOnceResult, responses=_ERRORS, summary="Consume one"
)
async def consume(
    request: Request, broker: BrokerDep, settings: SettingsDep, queue: QueueParam = "default"
) -> ConsumeOnceResult:
    """Take one task of ``queue`` through the worker lifecycle in this request."""
    return await consume_once(broker, settings, request.app.state.execution, queue)


@router.get("/dlq", response_model=DeadLetterList, responses=_ERRORS, summary="Dead tasks")
async def dlq(
    broker: BrokerDep,
    queue: OptionalQueue = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeadLetterList:
    """Dead tasks (as ``GET /v1/dlq``)."""
    return await list_dead(broker, queue=queue, limit=limit, cursor=cursor)


@router.delete("/dlq", response_model=CountResult, responses=_ERRORS, summary="Purge dead tasks")
async def purge_dlq(broker: BrokerDep, queue: OptionalQueue = None) -> CountResult:
    """Delete dead tasks (as ``DELETE /v1/dlq``)."""
    return await purge(broker, queue)
