"""Tests for taskforge.models: task spec validation, due times and backoff bounds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from taskforge.models import (
    MAX_DELAY_S,
    BackoffPolicy,
    DeadReason,
    JsonFault,
    TaskSpec,
    TaskState,
    check_json,
    client_idempotency_key,
    loads_checked,
    scoped_idempotency_key,
)

NOW_MS = 1_900_000_000_000


def test_minimal_spec_has_defaults() -> None:
    spec = TaskSpec(type="email.send")
    assert spec.queue == "default"
    assert spec.payload == {}
    assert spec.due_ms(NOW_MS) == 0


@pytest.mark.parametrize("type_", ["email.send", "a", "ns:task-1_x", "A.B:C-D_E", "x" * 100])
def test_valid_type_names(type_: str) -> None:
    assert TaskSpec(type=type_).type == type_


@pytest.mark.parametrize("type_", ["", "has space", "x" * 101, "a/b", "é", "a\n", "{q}"])
def test_bad_type_name(type_: str) -> None:
    with pytest.raises(ValidationError) as exc:
        TaskSpec(type=type_)
    assert exc.value.errors()[0]["loc"] == ("type",)


@pytest.mark.parametrize("queue", ["", "a b", "a.b", "{q}", "x" * 65])
def test_bad_queue(queue: str) -> None:
    with pytest.raises(ValidationError) as exc:
        TaskSpec(type="t", queue=queue)
    assert exc.value.errors()[0]["loc"] == ("queue",)
    assert "invalid queue name" in str(exc.value)


def test_delay_and_eta_together_are_refused() -> None:
    with pytest.raises(ValidationError, match="either delay_s or eta"):
        TaskSpec(type="t", delay_s=5, eta=datetime(2025, 1, 1, tzinfo=UTC))


def test_naive_eta_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TaskSpec(type="t", eta=datetime(2025, 1, 1))  # naive on purpose


def test_naive_eta_string_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TaskSpec.model_validate({"type": "t", "eta": "2025-01-01T00:00:00"})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 0),
        ({"delay_s": 0}, 0),
        ({"delay_s": 1.5}, NOW_MS + 1500),
        ({"delay_s": 3600}, NOW_MS + 3_600_000),
        ({"eta": datetime(2025, 1, 1, tzinfo=UTC)}, 1_735_689_600_000),
        ({"eta": datetime(2025, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)}, 1_735_689_600_250),
        ({"eta": datetime(2025, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))}, 1_735_689_600_000),
        ({"eta": "2025-01-01T00:00:00Z"}, 1_735_689_600_000),
        # An ETA in the past is due at once (at or before now).
        ({"eta": datetime(2000, 1, 1, tzinfo=UTC)}, 946_684_800_000),
    ],
)
def test_due_ms(fields: dict[str, Any], expected: int) -> None:
    assert TaskSpec(type="t", **fields).due_ms(NOW_MS) == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delay_s", -1),
        ("delay_s", 86_400 * 365 + 1),
        ("max_retries", -1),
        ("max_retries", 1001),
        ("timeout_s", 0),
        ("timeout_s", 86_401),
        ("idempotency_key", ""),
        ("idempotency_key", "k" * 217),
        ("traceparent", "t" * 257),
    ],
)
def test_option_bounds(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        TaskSpec.model_validate({"type": "t", field: value})
    assert exc.value.errors()[0]["loc"] == (field,)


def test_extra_fields_are_forbidden() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TaskSpec.model_validate({"type": "t", "priority": 5})


def test_payload_json_is_compact() -> None:
    spec = TaskSpec(type="t", payload={"to": "a@b.c", "n": [1, 2]})
    assert spec.payload_json() == '{"to":"a@b.c","n":[1,2]}'
    assert json.loads(spec.payload_json()) == spec.payload


@pytest.mark.parametrize("payload", [None, 0, "text", [1, "a"], {"nested": {"x": None}}])
def test_payload_may_be_any_json_value(payload: Any) -> None:
    assert json.loads(TaskSpec(type="t", payload=payload).payload_json()) == payload


# -- BackoffPolicy -----------------------------------------------------------------------


def test_backoff_defaults() -> None:
    assert BackoffPolicy() == BackoffPolicy(
        kind="exponential", base_s=1.0, cap_s=300.0, jitter=True
    )


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"base_s": 0}, True),
        ({"base_s": 86_400 * 7}, True),
        ({"base_s": 86_400 * 7 + 1}, False),
        ({"base_s": -0.1}, False),
        ({"cap_s": 0}, True),
        ({"cap_s": 86_400 * 30}, True),
        ({"cap_s": 86_400 * 30 + 1}, False),
        ({"cap_s": -1}, False),
        ({"kind": "fixed"}, True),
        ({"kind": "linear"}, False),
        ({"jitter": False}, True),
        ({"factor": 2}, False),  # extra fields are forbidden
    ],
)
def test_backoff_bounds(fields: dict[str, Any], ok: bool) -> None:
    if ok:
        policy = BackoffPolicy.model_validate(fields)
        assert all(getattr(policy, k) == v for k, v in fields.items())
    else:
        with pytest.raises(ValidationError):
            BackoffPolicy.model_validate(fields)


def test_backoff_is_frozen_and_roundtrips_json() -> None:
    policy = BackoffPolicy(kind="fixed", base_s=2, cap_s=10, jitter=False)
    with pytest.raises(ValidationError):
        policy.base_s = 3  # type: ignore[misc]
    assert BackoffPolicy.model_validate_json(policy.model_dump_json()) == policy


def test_spec_accepts_backoff_dict() -> None:
    spec = TaskSpec.model_validate({"type": "t", "backoff": {"kind": "fixed", "base_s": 2}})
    assert spec.backoff == BackoffPolicy(kind="fixed", base_s=2)


# -- enums ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (TaskState.SCHEDULED, False),
        (TaskState.QUEUED, False),
        (TaskState.RUNNING, False),
        (TaskState.FAILED, False),
        (TaskState.SUCCEEDED, True),
        (TaskState.DEAD, True),
        (TaskState.CANCELLED, True),
    ],
)
def test_terminal_states(state: TaskState, terminal: bool) -> None:
    assert state.terminal is terminal


def test_enum_values_are_their_wire_names() -> None:
    assert {s.value for s in TaskState} == {
        "scheduled", "queued", "running", "succeeded", "failed", "dead", "cancelled",
    }  # fmt: skip
    assert {r.value for r in DeadReason} == {
        "retries_exhausted", "timed_out", "abandoned", "unknown_task_type", "non_retryable",
        "unreadable_record",
    }  # fmt: skip


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "path", "kind"),
    [
        (_nested(4), (0, 0, 0), "json_too_deep"),
        ({"a": [1, {"b": float("nan")}]}, ("a", 1, "b"), "json_non_finite"),
        ([float("-inf")], (0,), "json_non_finite"),
        ({"k": "ok \ud800"}, ("k",), "json_invalid_text"),
        ({"\udc80": 1}, ("\udc80",), "json_invalid_text"),
    ],
)
def test_check_json_names_the_refused_value(value: Any, path: tuple[Any, ...], kind: str) -> None:
    with pytest.raises(JsonFault) as exc:
        check_json(value, max_depth=3)
    assert (exc.value.path, exc.value.kind) == (path, kind)


def test_check_json_accepts_what_can_be_stored() -> None:
    check_json({"a": [[1.5, -2, "\u00e9\U0001f600", None, True]], "b": 2**80}, max_depth=3)
    check_json(_nested(3), max_depth=3)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"[" * 5000, "json_too_deep"),
        (b'{"a": "\xed\xa0\x80"}', "json_invalid"),
        ('{"a": 1}'.encode("utf-16"), "json_invalid"),
        (b'{"a": 1e400}', "json_non_finite"),
        (b'{"a": NaN}', "json_non_finite"),
        (b"1" * 5000, "json_invalid"),  # more digits than Python converts
        (b"{", "json_invalid"),
    ],
)
def test_loads_checked_refuses(body: bytes, kind: str) -> None:
    with pytest.raises(JsonFault) as exc:
        loads_checked(body, max_depth=64)
    assert exc.value.kind == kind


def test_eta_is_capped_like_delay() -> None:
    now = datetime.now(UTC)
    assert TaskSpec(type="t", eta=now + timedelta(days=364)).eta is not None
    with pytest.raises(ValidationError, match="one year") as exc:
        TaskSpec(type="t", eta=now + timedelta(seconds=MAX_DELAY_S + 60))
    assert exc.value.errors()[0]["loc"] == ("eta",)


@pytest.mark.parametrize("field", ["base_s", "cap_s", "jitter", "kind"])
def test_backoff_is_strict(field: str) -> None:
    with pytest.raises(ValidationError):
        BackoffPolicy.model_validate({field: "1"})


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("0123456789ab:k", "k"), ("_:k:x", "k:x"), ("legacy-key", "legacy-key"), ("abc:k", "abc:k")],
)
def test_scoped_idempotency_keys_show_as_sent(stored: str, shown: str) -> None:
    assert client_idempotency_key(stored) == shown
    assert client_idempotency_key(scoped_idempotency_key("0123456789ab", shown)) == shown


def _disguised(levels: int) -> Any:
    # Each level's strings hold brackets that would pair with the real ones if counted.
    value: Any = 1
    for _ in range(levels):
        value = ["]", value, "["]
    return value


@pytest.mark.parametrize("escaped_quotes", [False, True])
def test_brackets_in_strings_neither_hide_nor_fake_nesting(escaped_quotes: bool) -> None:
    extra = '"\\"' if escaped_quotes else ""
    deep = json.dumps({"p": _disguised(70), "q": extra}).encode()
    with pytest.raises(JsonFault) as exc:
        loads_checked(deep, max_depth=64)
    assert exc.value.kind == "json_too_deep"
    shallow = json.dumps({"p": ["[[[[[[[[" * 20, extra]}).encode()
    assert loads_checked(shallow, max_depth=3)["p"][0].startswith("[[[")
