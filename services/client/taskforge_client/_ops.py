"""Every API operation as a :class:`~taskforge_client._calls.Call`, built once for both clients."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from taskforge_client._calls import Call, model, new_idempotency_key, nothing, query
from taskforge_client.models import (
    BatchCreated,
    CancelResult,
    CountResult,
    DeadLetterPage,
    KeyCreated,
    KeyList,
    NewTask,
    QueuePage,
    QueueStats,
    Task,
    TaskCreated,
)


def _segment(value: str) -> str:
    # An id is one path segment: a "/" or "?" in it must not reach another route.
    return quote(value, safe="")


def enqueue(task: NewTask) -> Call[TaskCreated]:
    """``POST /v1/tasks`` with the task's idempotency key, or a fresh one."""
    key = task.idempotency_key or new_idempotency_key()
    body = task.body()
    body.pop("idempotency_key", None)
    return Call(
        "POST", "/v1/tasks", model(TaskCreated), json=body,
        headers={"Idempotency-Key": key}, idempotent=True,
    )  # fmt: skip


def enqueue_batch(items: list[dict[str, Any]]) -> Call[BatchCreated]:
    """``POST /v1/tasks/batch``; every item carries its idempotency key, so resending is safe."""
    return Call(
        "POST", "/v1/tasks/batch", model(BatchCreated), json={"tasks": items}, idempotent=True
    )


def get(task_id: str) -> Call[Task]:
    """``GET /v1/tasks/{id}``."""
    return Call("GET", f"/v1/tasks/{_segment(task_id)}", model(Task), idempotent=True)


def cancel(task_id: str) -> Call[CancelResult]:
    """``DELETE /v1/tasks/{id}`` (cancelling twice is harmless)."""
    return Call("DELETE", f"/v1/tasks/{_segment(task_id)}", model(CancelResult), idempotent=True)


def queues(cursor: str | None, limit: int) -> Call[QueuePage]:
    """``GET /v1/queues``: one page."""
    params = query(cursor=cursor, limit=limit)
    return Call("GET", "/v1/queues", model(QueuePage), params=params, idempotent=True)


def queue(name: str) -> Call[QueueStats]:
    """``GET /v1/queues/{queue}``."""
    return Call("GET", f"/v1/queues/{_segment(name)}", model(QueueStats), idempotent=True)


def dlq_list(
    *,
    queue: str | None,
    task_type: str | None,
    reason: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> Call[DeadLetterPage]:
    """``GET /v1/dlq``: one page of dead tasks."""
    params = query(
        queue=queue, task_type=task_type, reason=reason, since=since, until=until,
        cursor=cursor, limit=limit,
    )  # fmt: skip
    return Call("GET", "/v1/dlq", model(DeadLetterPage), params=params, idempotent=True)


def _selection(queue: str | None, everything: bool) -> dict[str, str | int | bool]:
    if (queue is None) == (not everything):
        raise ValueError("give queue=<name> or all=True (every queue), not both")
    return query(queue=queue, all=True if everything else None)


def dlq_requeue(
    task_id: str | None, *, queue: str | None, everything: bool, limit: int | None
) -> Call[CountResult]:
    """Requeue one dead task, or up to ``limit`` of one queue (or of every queue)."""
    if task_id is not None:
        if queue is not None or everything or limit is not None:
            raise ValueError("give a task id, or a selection (queue or all), not both")
        path = f"/v1/dlq/{_segment(task_id)}/requeue"
        return Call("POST", path, model(CountResult), idempotent=True)
    params = {**_selection(queue, everything), **query(limit=limit)}
    # Not idempotent: resent after a lost answer, it would requeue up to limit more.
    return Call("POST", "/v1/dlq/requeue", model(CountResult), params=params)


def dlq_purge(*, queue: str | None, everything: bool) -> Call[CountResult]:
    """``DELETE /v1/dlq``: the dead tasks of one queue, or of every queue."""
    params = _selection(queue, everything)
    return Call("DELETE", "/v1/dlq", model(CountResult), params=params, idempotent=True)


def keys_create(
    name: str, scopes: Sequence[str], rate_per_s: float | None, burst: int | None
) -> Call[KeyCreated]:
    """``POST /v1/keys`` (not resent after a lost answer: it would make a second key)."""
    body = {"name": name, "scopes": list(scopes), "rate_per_s": rate_per_s, "burst": burst}
    return Call(
        "POST", "/v1/keys", model(KeyCreated), json={k: v for k, v in body.items() if v is not None}
    )


def keys_list() -> Call[KeyList]:
    """``GET /v1/keys``."""
    return Call("GET", "/v1/keys", model(KeyList), idempotent=True)


def keys_revoke(key_id: str) -> Call[None]:
    """``DELETE /v1/keys/{id}`` (revoking twice is harmless)."""
    return Call("DELETE", f"/v1/keys/{_segment(key_id)}", nothing, idempotent=True)
