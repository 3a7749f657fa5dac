"""Turning stored hashes and event lists into :class:`~taskforge.models.TaskRecord`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from taskforge.ids import queue_of
from taskforge.models import BackoffPolicy, DeadReason, TaskEvent, TaskRecord, TaskState


def _ms(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC) if value else None


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_event(raw: str) -> TaskEvent:
    """One stored event (JSON with epoch-ms ``at``) as a model."""
    data = json.loads(raw)
    data["at"] = _ms(str(data["at"]))
    return TaskEvent.model_validate(data)


def parse_record(fields: dict[str, str], events: list[str]) -> TaskRecord:
    """A stored task hash plus its event list, as the status API shows it."""
    get = fields.get
    return TaskRecord(
        id=fields["id"],
        queue=queue_of(fields["id"]),
        type=fields["type"],
        state=TaskState(fields["state"]),
        payload=_json(get("payload")),
        attempts=int(get("attempts") or 0),
        max_retries=int(v) if (v := get("max_retries")) else None,
        backoff=BackoffPolicy.model_validate_json(v) if (v := get("backoff")) else None,
        timeout_s=float(v) if (v := get("timeout_s")) else None,
        idempotency_key=get("idem_key") or None,
        created_at=_ms(get("created_ms")),
        scheduled_for=_ms(get("eta_ms")),
        started_at=_ms(get("started_ms")),
        finished_at=_ms(get("finished_ms")),
        worker=get("worker") or None,
        last_error=get("error") or None,
        traceback=get("traceback") or None,
        result=_json(get("result")),
        dead_reason=DeadReason(v) if (v := get("reason")) else None,
        cancel_requested=get("cancel") == "1",
        traceparent=get("traceparent") or None,
        events=[parse_event(e) for e in events],
    )
