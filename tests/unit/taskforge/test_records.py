"""Tests for taskforge.broker.records: stored hashes and event lists as TaskRecord."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from taskforge.broker import Broker
from taskforge.broker.consume import Outcome, fetch, finish
from taskforge.broker.enqueue import enqueue_many
from taskforge.broker.records import parse_event, parse_record
from taskforge.keys import QueueKeys
from taskforge.models import BackoffPolicy, DeadReason, TaskSpec, TaskState

TASK_ID = "emails.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3"
T0 = 1_732_790_000_000


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dead_task_hash() -> dict[str, str]:
    """A task that failed twice and was dead-lettered, as finish.lua leaves it."""
    return {
        "id": TASK_ID,
        "type": "email.send",
        "payload": '{"to":"a@example.com","subject":"hi"}',
        "attempts": "3",
        "max_retries": "2",
        "backoff": '{"kind":"fixed","base_s":5.0,"cap_s":60.0,"jitter":false}',
        "timeout_s": "30.0",
        "idem_key": "order-7",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "created_ms": str(T0),
        "state": "dead",
        "msg": "",
        "eta_ms": str(T0 + 10_500),
        "started_ms": str(T0 + 10_600),
        "worker": "host-1-abc123",
        "error": "SMTPRecipientsRefused: 550 no such user",
        "traceback": "Traceback (most recent call last):\n  ...\nSMTPRecipientsRefused",
        "reason": "retries_exhausted",
        "finished_ms": str(T0 + 10_700),
    }


def dead_task_events() -> list[str]:
    """Events as cjson writes them: compact, keys in any order."""
    return [
        json.dumps({"at": T0, "event": "enqueued"}),
        json.dumps({"at": T0 + 100, "event": "started", "worker": "host-1-abc123", "attempt": 1}),
        json.dumps(
            {
                "event": "failed",
                "worker": "host-1-abc123",
                "attempt": 1,
                "error": "x",
                "at": T0 + 200,
            }
        ),
        json.dumps({"at": T0 + 200, "event": "retry_scheduled", "delay_s": 5}),
        json.dumps({"at": T0 + 5200, "event": "queued"}),
        json.dumps({"at": T0 + 10_700, "event": "dead", "error": "retries_exhausted"}),
    ]


def test_parse_dead_record() -> None:
    record = parse_record(dead_task_hash(), dead_task_events())
    assert record.id == TASK_ID
    assert record.queue == "emails"
    assert record.type == "email.send"
    assert record.state is TaskState.DEAD
    assert record.payload == {"to": "a@example.com", "subject": "hi"}
    assert record.attempts == 3
    assert record.max_retries == 2
    assert record.backoff == BackoffPolicy(kind="fixed", base_s=5, cap_s=60, jitter=False)
    assert record.timeout_s == 30.0
    assert record.idempotency_key == "order-7"
    assert record.created_at == at(T0)
    assert record.scheduled_for == at(T0 + 10_500)
    assert record.started_at == at(T0 + 10_600)
    assert record.finished_at == at(T0 + 10_700)
    assert record.finished_at.tzinfo is UTC
    assert record.worker == "host-1-abc123"
    assert record.last_error == "SMTPRecipientsRefused: 550 no such user"
    assert record.traceback is not None
    assert record.traceback.endswith("SMTPRecipientsRefused")
    assert record.dead_reason is DeadReason.RETRIES_EXHAUSTED
    assert record.result is None
    assert record.cancel_requested is False
    assert record.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    assert [e.event for e in record.events] == [
        "enqueued", "started", "failed", "retry_scheduled", "queued", "dead",
    ]  # fmt: skip
    started, failed, retry = record.events[1], record.events[2], record.events[3]
    assert started.at == at(T0 + 100)
    assert (started.worker, started.attempt) == ("host-1-abc123", 1)
    assert failed.error == "x"
    assert retry.delay_s == 5.0


def test_parse_fresh_record_unset_fields_are_none() -> None:
    fields = {
        "id": TASK_ID,
        "type": "t",
        "payload": "{}",
        "attempts": "0",
        "max_retries": "",
        "backoff": "",
        "timeout_s": "",
        "idem_key": "",
        "traceparent": "",
        "created_ms": str(T0),
        "state": "queued",
        "msg": "1732790000000-0",
    }
    record = parse_record(fields, [json.dumps({"at": T0, "event": "enqueued"})])
    assert record.state is TaskState.QUEUED
    assert record.payload == {}
    assert record.attempts == 0
    assert record.max_retries is None
    assert record.backoff is None
    assert record.timeout_s is None
    assert record.idempotency_key is None
    assert record.traceparent is None
    assert record.started_at is None
    assert record.finished_at is None
    assert record.dead_reason is None
    assert record.worker is None


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ('{"sent":true}', {"sent": True}),
        ("null", None),
        ('"text"', "text"),
        ("42", 42),
        ("not json at all", "not json at all"),  # kept as text rather than failing the read
    ],
)
def test_result_is_decoded_when_json(stored: str, expected: object) -> None:
    fields = {"id": TASK_ID, "type": "t", "state": "succeeded", "result": stored}
    assert parse_record(fields, []).result == expected


def test_requeued_record_clears_reason_and_finish() -> None:
    # dlq_requeue.lua blanks these fields rather than deleting them.
    fields = {
        **dead_task_hash(),
        "state": "queued",
        "reason": "",
        "finished_ms": "",
        "attempts": "0",
    }
    record = parse_record(fields, [])
    assert record.dead_reason is None
    assert record.finished_at is None
    assert record.attempts == 0


def test_cancel_requested_flag() -> None:
    fields = {"id": TASK_ID, "type": "t", "state": "running", "cancel": "1"}
    assert parse_record(fields, []).cancel_requested is True


def test_parse_event_accepts_fractional_delay() -> None:
    event = parse_event('{"at":1732790000123,"event":"retry_scheduled","delay_s":0.25}')
    assert event.at == at(1_732_790_000_123)
    assert event.delay_s == 0.25


# -- against what the scripts really write -------------------------------------------------


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Broker]:
    b = Broker.from_url(redis_url)
    try:
        yield b
    finally:
        await b.close()


async def test_parse_record_of_a_real_dead_task(broker: Broker, queue_name: str) -> None:
    spec = TaskSpec(
        type="email.send",
        queue=queue_name,
        payload={"to": "a@example.com"},
        max_retries=0,
        backoff=BackoffPolicy(kind="fixed", base_s=5),
        timeout_s=12.5,
        idempotency_key="order-9",
    )
    before_ms = int(time.time() * 1000)
    (result,) = await enqueue_many(
        broker, [spec], now_ms=before_ms, idempotency_ttl_s=60, max_payload_bytes=65_536
    )
    (task,), _, _ = await fetch(broker, queue_name, "w-1", 1, 30_000)
    await finish(
        broker,
        queue_name,
        "w-1",
        [
            Outcome(
                task.id,
                "dead",
                "ValueError: nope",
                "Traceback...",
                dead_reason=DeadReason.NON_RETRYABLE,
            )
        ],
        task_ttl_s=60,
        dead_ttl_s=60,
    )
    keys = QueueKeys(queue_name)
    fields = await broker.redis.hgetall(keys.task(result.task_id))
    events = await broker.redis.lrange(keys.events(result.task_id), 0, -1)

    record = parse_record(fields, events)
    assert record.id == result.task_id
    assert record.queue == queue_name
    assert record.state is TaskState.DEAD
    assert record.payload == {"to": "a@example.com"}
    assert record.attempts == 1
    assert record.max_retries == 0
    assert record.backoff == BackoffPolicy(kind="fixed", base_s=5)
    assert record.timeout_s == 12.5
    assert record.idempotency_key == "order-9"
    assert record.worker == "w-1"
    assert record.last_error == "ValueError: nope"
    assert record.dead_reason is DeadReason.NON_RETRYABLE
    assert record.created_at is not None
    assert record.finished_at is not None
    assert record.started_at is not None
    assert record.created_at <= record.started_at <= record.finished_at
    # Redis's clock and ours agree to within a generous margin on one host.
    assert abs(record.created_at.timestamp() * 1000 - before_ms) < 60_000
    assert [e.event for e in record.events] == ["enqueued", "started", "failed", "dead"]
    assert record.events[1].attempt == 1
    assert record.events[1].worker == "w-1"
    assert record.events[3].error == "non_retryable"


async def test_a_waiting_task_has_no_stored_log_and_shows_its_enqueue(
    broker: Broker, queue_name: str
) -> None:
    (result,) = await enqueue_many(
        broker, [TaskSpec(type="echo", queue=queue_name)], now_ms=0, idempotency_ttl_s=60,
        max_payload_bytes=1024,
    )  # fmt: skip
    keys = QueueKeys(queue_name)
    assert not await broker.redis.exists(keys.events(result.task_id))
    fields = await broker.redis.hgetall(keys.task(result.task_id))
    record = parse_record(fields, [])
    assert [(e.event, e.at) for e in record.events] == [("enqueued", record.created_at)]
    # Once it runs, the stored log follows the implied first event.
    (_task,), _, _ = await fetch(broker, queue_name, "w-1", 1, 30_000)
    events = await broker.redis.lrange(keys.events(result.task_id), 0, -1)
    record = parse_record(await broker.redis.hgetall(keys.task(result.task_id)), events)
    assert [e.event for e in record.events] == ["enqueued", "started"]


def test_a_log_stored_with_its_first_event_is_shown_as_stored() -> None:
    """Records written before the enqueue event was implied, and delayed tasks, store it."""
    fields = {"id": "q.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3", "state": "queued", "created_ms": "5"}
    for first in ("enqueued", "scheduled"):
        stored = [json.dumps({"at": 5, "event": first}), json.dumps({"at": 6, "event": "started"})]
        assert [e.event for e in parse_record(fields, stored).events] == [first, "started"]


def test_a_log_at_its_bound_gets_no_implied_first_event() -> None:
    """The oldest events of a 100-event log were trimmed: nothing is put in front of the gap."""
    fields = {"id": "q.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3", "state": "failed", "created_ms": "5"}
    stored = [json.dumps({"at": 6 + i, "event": "started"}) for i in range(100)]
    assert [e.event for e in parse_record(fields, stored).events] == ["started"] * 100
    assert parse_record(fields, stored[:99]).events[0].event == "enqueued"
