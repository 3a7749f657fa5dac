"""``/v1/tasks``: enqueue (single and batch), status, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from taskforge.broker.admin import cancel_task, get_task
from taskforge.models import MAX_IDEMPOTENCY_KEY_CHARS, TaskRecord
from taskforge.problems import Problem
from taskforge_api.deps import BrokerDep, ClientScopeDep, SettingsDep
from taskforge_api.enqueueing import enqueue_specs
from taskforge_api.jsonbody import CheckedJsonRoute
from taskforge_api.schemas import BatchCreate, BatchCreated, CancelResult, TaskCreate, TaskCreated

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], route_class=CheckedJsonRoute)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        description="Same key and body within the TTL returns the first task; another body: 409.",
    ),
]
TraceParent = Annotated[
    str | None,
    Header(alias="traceparent", max_length=256, description="W3C trace context."),
]
_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": Problem, "description": "No such task"},
    409: {"model": Problem, "description": "Conflict"},
    422: {"model": Problem, "description": "Invalid request"},
    503: {"model": Problem, "description": "Redis unavailable"},
}


@router.post(
    "",
    status_code=201,
    response_model=TaskCreated,
    responses={200: {"model": TaskCreated, "description": "Idempotent replay"}, **_ERRORS},
    summary="Enqueue a task",
)
async def create_task(
    body: TaskCreate,
    response: Response,
    broker: BrokerDep,
    settings: SettingsDep,
    scope: ClientScopeDep,
    idempotency_key: IdempotencyKey = None,
    traceparent: TraceParent = None,
) -> TaskCreated:
    """Enqueue one task; with ``Idempotency-Key`` a replay returns the first task (200)."""
    (created,) = await enqueue_specs(
        broker, settings, [body.to_spec(idempotency_key, traceparent)], scope=scope
    )
    response.headers["Location"] = f"/v1/tasks/{created.id}"
    if not created.created:
        response.status_code = 200
    return created


@router.post(
    "/batch",
    status_code=201,
    response_model=BatchCreated,
    responses=_ERRORS,
    summary="Enqueue several tasks",
)
async def create_batch(
    body: BatchCreate,
    broker: BrokerDep,
    settings: SettingsDep,
    scope: ClientScopeDep,
    traceparent: TraceParent = None,
) -> BatchCreated:
    """Validate every task, then enqueue all (all or nothing per queue, one script per queue)."""
    specs = [item.to_spec(item.idempotency_key, traceparent) for item in body.tasks]
    return BatchCreated(tasks=await enqueue_specs(broker, settings, specs, scope=scope))


@router.get("/{task_id}", response_model=TaskRecord, responses=_ERRORS, summary="Task status")
async def read_task(task_id: str, broker: BrokerDep) -> TaskRecord:
    """State, attempts, times, last error, result and event log of a task."""
    return await get_task(broker, task_id)


@router.delete(
    "/{task_id}", response_model=CancelResult, responses=_ERRORS, summary="Cancel a task"
)
async def delete_task(task_id: str, broker: BrokerDep, settings: SettingsDep) -> CancelResult:
    """Cancel a waiting task now, or ask its worker to stop it (``cancel_requested``)."""
    status = await cancel_task(broker, task_id, task_ttl_s=settings.task_ttl_s)
    return CancelResult(id=task_id, status=status)  # type: ignore[arg-type]
