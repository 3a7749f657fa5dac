"""Turning stored hashes and event lists into :class:`~taskforge.models.TaskRecord`.

Decoding is tolerant: a record written before a validation existed (a payload nested too
deep, a lone surrogate, a corrupted field) must not make a status read or a whole DLQ listing
fail. Each field that cannot be decoded, or could not be serialised again, is replaced by a
placeholder and named in ``TaskRecord.unreadable`` with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from taskforge.broker import fields as F
from taskforge.ids import queue_of
from taskforge.models import (
    MAX_STORED_JSON_DEPTH,
    UNREADABLE,
    BackoffPolicy,
    DeadReason,
    JsonFault,
    TaskEvent,
    TaskRecord,
    TaskState,
    check_json,
    client_idempotency_key,
)

T = TypeVar("T")

#: What a failed field decoder may raise; anything else is a bug and propagates.
_DECODE_ERRORS = (ValueError, TypeError, KeyError, OverflowError, OSError, ValidationError)


def _ms(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC) if value else None


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        decoded = json.loads(value)
    except RecursionError:
        raise JsonFault((), "nested too deep to decode", "json_too_deep") from None
    except ValueError:
        return value  # stored as plain text by an older version: show it as it is
    check_json(decoded, MAX_STORED_JSON_DEPTH)
    return decoded


def parse_event(raw: str) -> TaskEvent:
    """One stored event (JSON with epoch-ms ``at``) as a model."""
    data = json.loads(raw)
    check_json(data, MAX_STORED_JSON_DEPTH)
    data["at"] = _ms(str(data["at"]))
    return TaskEvent.model_validate(data)


class _Decoder:
    """Field decoders that note what failed instead of raising."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.unreadable: dict[str, str] = {}

    def field(self, name: str, decode: Callable[[str | None], T], placeholder: T) -> T:
        try:
            return decode(self.fields.get(name))
        except _DECODE_ERRORS as exc:
            self.unreadable[name] = _reason(exc)
            return placeholder

    def events(self, events: list[str]) -> list[TaskEvent]:
        parsed: list[TaskEvent] = []
        for index, raw in enumerate(events):
            try:
                parsed.append(parse_event(raw))
            except (*_DECODE_ERRORS, RecursionError) as exc:
                self.unreadable[f"events.{index}"] = _reason(exc)
        return parsed


#: The newest events a log keeps (addEvent.lua trims to it).
MAX_EVENTS = 100
#: Events a task's log starts with; enqueue.lua stores "scheduled" and older versions stored both.
_FIRST_EVENTS = frozenset({"enqueued", "scheduled"})


def _with_enqueue(events: list[TaskEvent], created_at: datetime | None) -> list[TaskEvent]:
    """The log with its implied first event: a task queued at once has no stored "enqueued".

    A log at its bound of 100 has lost its oldest events: nothing is implied in front of it.
    """
    if created_at is None or len(events) >= MAX_EVENTS:
        return events
    if events and events[0].event in _FIRST_EVENTS:
        return events
    return [TaskEvent(at=created_at, event="enqueued"), *events]


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _state(value: str | None) -> TaskState:
    return TaskState(value or "")


def _queue(value: str | None) -> str:
    return queue_of(value or "")


def parse_record(fields: dict[str, str], events: list[str]) -> TaskRecord:
    """A stored task hash plus its event list, as the status API shows it; never raises."""
    get = fields.get
    d = _Decoder(fields)
    task_id = get(F.ID) or ""
    created_at = d.field(F.CREATED_MS, _ms, None)
    record = TaskRecord(
        id=task_id,
        queue=d.field(F.ID, _queue, ""),
        type=get(F.TYPE) or "",
        # Only Lua scripts write the state; a value outside the enum means a corrupted hash.
        state=d.field(F.STATE, _state, TaskState.FAILED),
        payload=d.field(F.PAYLOAD, _json, UNREADABLE),
        attempts=d.field(F.ATTEMPTS, lambda v: int(v or 0), 0),
        max_retries=d.field(F.MAX_RETRIES, lambda v: int(v) if v else None, None),
        backoff=d.field(
            F.BACKOFF, lambda v: BackoffPolicy.model_validate_json(v) if v else None, None
        ),
        timeout_s=d.field(F.TIMEOUT_S, lambda v: float(v) if v else None, None),
        idempotency_key=client_idempotency_key(v) if (v := get(F.IDEM_KEY)) else None,
        created_at=created_at,
        scheduled_for=d.field(F.ETA_MS, _ms, None),
        started_at=d.field(F.STARTED_MS, _ms, None),
        finished_at=d.field(F.FINISHED_MS, _ms, None),
        worker=get(F.WORKER) or None,
        last_error=get(F.ERROR) or None,
        traceback=get(F.TRACEBACK) or None,
        result=d.field(F.RESULT, _json, UNREADABLE),
        dead_reason=d.field(F.REASON, lambda v: DeadReason(v) if v else None, None),
        cancel_requested=get(F.CANCEL) == "1",
        traceparent=get(F.TRACEPARENT) or None,
        events=_with_enqueue(d.events(events), created_at),
    )
    if d.unreadable:
        record.unreadable = d.unreadable
    return record
