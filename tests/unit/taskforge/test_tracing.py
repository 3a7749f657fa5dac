"""taskforge.tracing: when tracing turns on, and the spans it makes, read back from the SDK's
in-memory exporter. The real export path (OTLP over HTTP to Jaeger, across processes) is
tests/integration/test_tracing.py; this file checks the rules on one process's spans."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskforge import tracing
from taskforge.errors import ConfigurationError
from taskforge.logs import JsonFormatter
from taskforge.tracing.asgi import ServerSpans
from taskforge.tracing.generator import TaskIdGenerator
from taskforge.tracing.ids import attempt_span_id, task_trace_id
from taskforge.tracing.setup import STATE, endpoint_from_env

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
TASK = "q.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=TaskIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    STATE.install(provider)
    try:
        yield exporter
    finally:
        STATE.install(None)
        provider.shutdown()


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"},
    ],
)
def test_tracing_is_off_without_an_endpoint_or_when_disabled(env: dict[str, str]) -> None:
    assert endpoint_from_env(env) is None


def test_the_traces_endpoint_wins_over_the_general_one() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:4318/v1/traces",
    }
    assert endpoint_from_env(env) == "https://traces:4318/v1/traces"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf only"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "http/protobuf only"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "otlp or none"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "absolute http(s) URL"),
    ],
)
def test_what_cannot_be_exported_is_refused_at_startup(extra: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words.replace("(", r"\(").replace(")", r"\)")):
        endpoint_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", **extra})


def test_helpers_do_nothing_while_tracing_is_off() -> None:
    assert not tracing.enabled()
    assert tracing.start_attempt(TASK, "q", "t", 1, PARENT) is None
    assert tracing.current_traceparent(PARENT) == PARENT
    assert tracing.current_ids() is None
    with tracing.sending(["q"], ["t"], 1, PARENT) as span:
        assert span is None


# --------------------------------------------------------------------------- worker attempts


def test_an_attempt_continues_the_stored_context(spans: InMemorySpanExporter) -> None:
    span = tracing.start_attempt(TASK, "q", "emails.send", 1, PARENT)
    with tracing.activated(span):
        inner = tracing.current_traceparent()
    tracing.end_attempt(span, "succeeded", {})
    done = only(spans, "process emails.send")
    assert done.kind is SpanKind.CONSUMER
    assert done.context is not None and done.parent is not None
    assert done.context.trace_id == int(TRACE_ID, 16)
    assert done.parent.span_id == 0xB7AD6B7169203331
    assert done.context.span_id == attempt_span_id(TASK, 1)
    assert inner == f"00-{TRACE_ID}-{attempt_span_id(TASK, 1):016x}-01"
    assert dict(done.attributes or {}) == {
        "messaging.system": "taskforge",
        "messaging.operation.type": "process",
        "messaging.destination.name": "q",
        "messaging.message.id": TASK,
        "taskforge.task.id": TASK,
        "taskforge.task.queue": "q",
        "taskforge.task.type": "emails.send",
        "taskforge.task.attempt": 1,
        "taskforge.task.outcome": "succeeded",
    }
    assert done.status.status_code is StatusCode.UNSET
    assert not done.links


def test_a_retry_links_to_the_attempt_before_it(spans: InMemorySpanExporter) -> None:
    first = tracing.start_attempt(TASK, "q", "t", 1, PARENT)
    tracing.end_attempt(first, "retry", {"error.type": "ValueError"})
    second = tracing.start_attempt(TASK, "q", "t", 2, PARENT)
    tracing.end_attempt(second, "succeeded", {})
    one, two = spans.get_finished_spans()
    assert one.status.status_code is StatusCode.ERROR
    assert one.status.description == "ValueError"
    assert one.context is not None and two.context is not None
    assert [link.context.span_id for link in two.links] == [one.context.span_id]
    assert two.links[0].context.trace_id == one.context.trace_id == int(TRACE_ID, 16)
    assert two.parent is not None and two.parent.span_id == 0xB7AD6B7169203331


def test_a_task_without_context_keeps_its_attempts_in_one_trace(
    spans: InMemorySpanExporter,
) -> None:
    for attempt in (1, 2):
        tracing.end_attempt(tracing.start_attempt(TASK, "q", "t", attempt, ""), "retry", {})
    one, two = spans.get_finished_spans()
    assert one.context is not None and two.context is not None
    assert one.context.trace_id == two.context.trace_id == task_trace_id(TASK)
    assert one.parent is None
    assert two.links[0].context.span_id == one.context.span_id


def test_only_the_attempt_span_takes_the_hashed_id(spans: InMemorySpanExporter) -> None:
    span = tracing.start_attempt(TASK, "q", "t", 1, PARENT)
    with tracing.activated(span), tracing.redis_script("finish"):
        pass
    tracing.end_attempt(span, "succeeded", {})
    child = only(spans, "EVALSHA finish")
    assert child.context is not None and child.parent is not None
    assert child.parent.span_id == attempt_span_id(TASK, 1) != child.context.span_id


# --------------------------------------------------------------------------- enqueue, logs


def test_the_producer_span_is_what_the_task_records_name(spans: InMemorySpanExporter) -> None:
    with tracing.sending(["emails"], ["emails.send"], 1, PARENT) as span:
        sent = tracing.traceparent_of(span) if span is not None else None
        with tracing.redis_script("enqueue"):
            pass
    producer = only(spans, "send emails")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.context is not None and producer.parent is not None
    assert sent == f"00-{TRACE_ID}-{producer.context.span_id:016x}-01"
    assert producer.parent.span_id == 0xB7AD6B7169203331  # outside a request: the given one
    script = only(spans, "EVALSHA enqueue")
    assert script.kind is SpanKind.CLIENT
    assert script.attributes is not None and script.attributes["db.system.name"] == "redis"


def test_no_script_span_outside_a_recording_span(spans: InMemorySpanExporter) -> None:
    with tracing.redis_script("fetch"):
        pass
    assert spans.get_finished_spans() == ()


def test_json_log_lines_inside_a_span_name_it(spans: InMemorySpanExporter) -> None:
    formatter = JsonFormatter("worker")
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "boom", None, None)
    span = tracing.start_attempt(TASK, "q", "t", 1, PARENT)
    with tracing.activated(span):
        line = json.loads(formatter.format(record))
    tracing.end_attempt(span, "succeeded", {})
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] == f"{attempt_span_id(TASK, 1):016x}"
    outside = json.loads(formatter.format(record))
    assert "span_id" not in outside and "trace_id" not in outside


# --------------------------------------------------------------------------- server spans


async def _call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers,
             "server": ("127.0.0.1", 8080), "scheme": "http", "http_version": "1.1"}  # fmt: skip
    await app(scope, receive, send)
    return int(sent[0]["status"])


class _Route:
    path = "/v1/tasks/{task_id}"


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["path"].startswith("/v1/tasks/"):
        scope["route"] = _Route()  # what Starlette's router leaves in the scope
    status = 500 if scope["path"] == "/boom" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_a_request_span_continues_the_callers_trace(spans: InMemorySpanExporter) -> None:
    app = ServerSpans(_answer, lambda method, path: "/v1/tasks" if path == "/v1/tasks" else None)
    await _call(app, "POST", "/v1/tasks", [(b"traceparent", PARENT.encode())])
    await _call(app, "GET", "/v1/tasks/q.1", [])
    await _call(app, "GET", "/boom", [])
    post, get, boom = spans.get_finished_spans()
    assert (post.name, post.kind) == ("POST /v1/tasks", SpanKind.SERVER)
    assert post.parent is not None and post.parent.span_id == 0xB7AD6B7169203331
    assert post.attributes is not None and post.attributes["http.response.status_code"] == 200
    assert get.name == "GET /v1/tasks/{task_id}"  # the template, never the task id
    assert get.attributes is not None and get.attributes["http.route"] == "/v1/tasks/{task_id}"
    assert get.parent is None
    assert boom.name == "GET" and boom.status.status_code is StatusCode.ERROR


async def test_requests_pass_straight_through_while_tracing_is_off() -> None:
    app = ServerSpans(_answer, lambda method, path: None)
    assert await _call(app, "GET", "/boom", []) == 500
    assert STATE.provider is None


# --------------------------------------------------------------------------- service start-up


@pytest.mark.parametrize("service", ["gateway", "api", "worker", "scheduler"])
def test_a_service_asked_for_grpc_export_exits_with_a_clear_error(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFORGE_", "OTEL_"))}
    env.update({
        "TASKFORGE_REDIS_URL": "redis://127.0.0.1:1/0",  # never reached: it stops before
        "TASKFORGE_INTERNAL_TOKEN": "t" * 40,
        "TASKFORGE_ENV": "dev",
        "TASKFORGE_API_URL": "http://127.0.0.1:1",
        "TASKFORGE_METRICS_PORT": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    })  # fmt: skip
    done = subprocess.run([sys.executable, "-m", f"taskforge_{service}.main"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"taskforge-{service}: OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in done.stderr
    assert "Traceback" not in done.stderr
