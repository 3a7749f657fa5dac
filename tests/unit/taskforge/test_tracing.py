"""taskforge.tracing: when tracing turns on, and the spans it makes, read back from the SDK's
in-memory exporter. The real export path (OTLP over HTTP to Jaeger, across processes) is
tests/integration/test_tracing.py; this file checks the rules on one process's spans."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, SpanKind, StatusCode

from taskforge import tracing
from taskforge.broker import Broker
from taskforge.broker.admin import requeue_dead_task
from taskforge.broker.consume import FetchedTask, Outcome, fetch, finish
from taskforge.broker.enqueue import enqueue_many
from taskforge.errors import ConfigurationError, IdempotencyConflict, RedisUnavailable
from taskforge.execution import ExecutionEnv, execute
from taskforge.handlers.registry import Registry, TaskContext
from taskforge.keys import QueueKeys
from taskforge.logs import JsonFormatter
from taskforge.models import DeadReason, TaskSpec
from taskforge.settings.handlers import HandlerSettings
from taskforge.tracing.asgi import ROUTE_KEY, ServerSpans
from taskforge.tracing.generator import TaskIdGenerator
from taskforge.tracing.ids import delivery_span_id, task_trace_id
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
    assert tracing.start_attempt(TASK, "q", "t", 1, PARENT, 1) is None
    assert tracing.current_traceparent(PARENT) == PARENT
    assert tracing.current_ids() is None
    with tracing.sending(["q"], ["t"], 1, PARENT) as span:
        assert span is None


# --------------------------------------------------------------------------- worker attempts


def test_an_attempt_continues_the_stored_context(spans: InMemorySpanExporter) -> None:
    span = tracing.start_attempt(TASK, "q", "emails.send", 1, PARENT, 1)
    with tracing.activated(span):
        inner = tracing.current_traceparent()
    tracing.end_attempt(span, "succeeded", {})
    done = only(spans, "process emails.send")
    assert done.kind is SpanKind.CONSUMER
    assert done.context is not None and done.parent is not None
    assert done.context.trace_id == int(TRACE_ID, 16)
    assert done.parent.span_id == 0xB7AD6B7169203331
    assert done.context.span_id == delivery_span_id(TASK, 1)
    assert inner == f"00-{TRACE_ID}-{delivery_span_id(TASK, 1):016x}-01"
    assert dict(done.attributes or {}) == {
        "messaging.system": "taskforge",
        "messaging.operation.type": "process",
        "messaging.destination.name": "q",
        "messaging.message.id": TASK,
        "taskforge.task.id": TASK,
        "taskforge.task.queue": "q",
        "taskforge.task.type": "emails.send",
        "taskforge.task.attempt": 1,
        "taskforge.task.delivery": 1,
        "taskforge.task.outcome": "succeeded",
    }
    assert done.status.status_code is StatusCode.UNSET
    assert not done.links


def test_a_retry_links_to_the_attempt_before_it(spans: InMemorySpanExporter) -> None:
    first = tracing.start_attempt(TASK, "q", "t", 1, PARENT, 1)
    tracing.end_attempt(first, "retry", {"error.type": "ValueError"})
    second = tracing.start_attempt(TASK, "q", "t", 2, PARENT, 2)
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
        tracing.end_attempt(tracing.start_attempt(TASK, "q", "t", attempt, "", 0), "retry", {})
    one, two = spans.get_finished_spans()
    assert one.context is not None and two.context is not None
    assert one.context.trace_id == two.context.trace_id == task_trace_id(TASK)
    assert one.parent is None
    assert two.links[0].context.span_id == one.context.span_id


def test_only_the_attempt_span_takes_the_hashed_id(spans: InMemorySpanExporter) -> None:
    span = tracing.start_attempt(TASK, "q", "t", 1, PARENT, 1)
    with tracing.activated(span), tracing.redis_operation("finish"):
        pass
    tracing.end_attempt(span, "succeeded", {})
    child = only(spans, "redis finish")
    assert child.context is not None and child.parent is not None
    assert child.parent.span_id == delivery_span_id(TASK, 1) != child.context.span_id


# --------------------------------------------------------------------------- enqueue, logs


def test_the_producer_span_is_what_the_task_records_name(spans: InMemorySpanExporter) -> None:
    with tracing.sending(["emails"], ["emails.send"], 1, PARENT) as span:
        sent = tracing.traceparent_of(span) if span is not None else None
        with tracing.redis_operation("enqueue"):
            pass
    producer = only(spans, "send emails")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.context is not None and producer.parent is not None
    assert sent == f"00-{TRACE_ID}-{producer.context.span_id:016x}-01"
    assert producer.parent.span_id == 0xB7AD6B7169203331  # outside a request: the given one
    script = only(spans, "redis enqueue")
    assert script.kind is SpanKind.CLIENT
    assert script.attributes is not None and script.attributes["db.system.name"] == "redis"


def test_no_script_span_outside_a_recording_span(spans: InMemorySpanExporter) -> None:
    with tracing.redis_operation("fetch"):
        pass
    assert spans.get_finished_spans() == ()


def test_json_log_lines_inside_a_span_name_it(spans: InMemorySpanExporter) -> None:
    formatter = JsonFormatter("worker")
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "boom", None, None)
    span = tracing.start_attempt(TASK, "q", "t", 1, PARENT, 1)
    with tracing.activated(span):
        line = json.loads(formatter.format(record))
    tracing.end_attempt(span, "succeeded", {})
    assert line["trace_id"] == TRACE_ID
    assert line["span_id"] == f"{delivery_span_id(TASK, 1):016x}"
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
    elif scope["path"] == "/v1/tasks":
        scope[ROUTE_KEY] = "/v1/tasks"  # what the guard and the fast path leave
    status = 500 if scope["path"] == "/boom" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_a_request_span_continues_the_callers_trace(spans: InMemorySpanExporter) -> None:
    app = ServerSpans(_answer)
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
    app = ServerSpans(_answer)
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


# --------------------------------------------------------------------------- what is not recorded


def test_an_exception_leaves_its_class_but_not_its_message(spans: InMemorySpanExporter) -> None:
    secret = "idem-key-hunter2"
    with pytest.raises(ValueError, match="another body"), tracing.sending(["q"], ["t"], 1, PARENT):
        raise ValueError(f"idempotency key {secret} was used with another body")
    span = only(spans, "send q")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError"
    assert dict(span.attributes or {})["error.type"] == "ValueError"
    assert span.events == ()  # the SDK's exception event would hold the message
    assert secret not in repr(span.to_json())


async def test_refusals_and_cancellations_are_not_error_spans(
    spans: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(IdempotencyConflict),
        tracing.sending(["q"], ["t"], 1, PARENT),
        tracing.redis_operation("enqueue"),
    ):
        raise IdempotencyConflict("key k was used with another body")
    with pytest.raises(asyncio.CancelledError), tracing.sending(["q"], ["t"], 1, PARENT):
        raise asyncio.CancelledError
    with pytest.raises(RedisUnavailable), tracing.sending(["q"], ["t"], 1, PARENT):
        raise RedisUnavailable("enqueue: Redis unavailable: refused")
    codes = [(s.name, s.status.status_code) for s in spans.get_finished_spans()]
    assert codes == [
        ("redis enqueue", StatusCode.UNSET),
        ("send q", StatusCode.UNSET),
        ("send q", StatusCode.UNSET),
        ("send q", StatusCode.ERROR),
    ]


async def test_probes_are_not_traced(spans: InMemorySpanExporter) -> None:
    app = ServerSpans(_answer)
    for path in ("/healthz", "/readyz"):
        assert await _call(app, "GET", path, []) == 200
    assert spans.get_finished_spans() == ()


def test_an_unsampled_parent_records_nothing(spans: InMemorySpanExporter) -> None:
    unsampled = f"00-{TRACE_ID}-b7ad6b7169203331-00"
    span = tracing.start_attempt(TASK, "q", "t", 1, unsampled, 1)
    assert span is not None and not span.is_recording()
    with tracing.activated(span):
        assert tracing.current_ids() == (TRACE_ID, f"{delivery_span_id(TASK, 1):016x}")
        assert tracing.current_traceparent() is not None
        assert tracing.current_traceparent().endswith("-00")  # type: ignore[union-attr]
        with tracing.redis_operation("x"):
            pass
    tracing.end_attempt(span, "succeeded", {})
    with tracing.sending(["q"], ["t"], 1, unsampled) as sent:
        assert sent is not None and not sent.is_recording()
    assert spans.get_finished_spans() == ()


async def test_every_helper_is_inert_while_tracing_is_off() -> None:
    assert STATE.provider is None
    with (
        tracing.activated(None),
        tracing.redis_operation("x"),
        tracing.http_client("POST", "/v1/tasks", "api") as span,
    ):
        assert span is None
        tracing.record_status(span, 500)
    tracing.end_attempt(None, "succeeded", {})
    tracing.record_pass("promote", 0, {"taskforge.tasks.moved": 1})
    assert await tracing.within(NonRecordingSpan(INVALID_SPAN_CONTEXT), _seven()) == 7


async def _seven() -> int:
    return 7


# --------------------------------------------------------------------------- deliveries


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Broker]:
    b = Broker.from_url(redis_url)
    yield b
    await b.close()


async def test_a_give_back_or_a_requeue_never_reuses_an_attempts_span_id(
    spans: InMemorySpanExporter, broker: Broker
) -> None:
    """The attempt count goes down on a give-back and back to 0 on a DLQ requeue; the
    delivery count that numbers the spans does neither."""
    queue = f"tracing-{uuid.uuid4().hex[:8]}"
    spec = TaskSpec(type="t", queue=queue, max_retries=0, traceparent=PARENT)
    (created,) = await enqueue_many(broker, [spec], now_ms=0, idempotency_ttl_s=60,
                                    max_payload_bytes=1 << 20)  # fmt: skip
    seen: list[tuple[int, int]] = []
    for outcome in ("giveback", "dead"):
        (task,), _, _ = await fetch(broker, queue, "w", 1, 30_000)
        seen.append((task.attempts, task.deliveries))
        done = Outcome(task.id, outcome, dead_reason=DeadReason.RETRIES_EXHAUSTED if outcome ==
                       "dead" else None, attempt=task.attempts)  # fmt: skip
        await finish(broker, queue, "w", [done], task_ttl_s=60, dead_ttl_s=60)
    await requeue_dead_task(broker, created.task_id)
    (task,), _, _ = await fetch(broker, queue, "w", 1, 30_000)
    seen.append((task.attempts, task.deliveries))
    assert seen == [(1, 1), (1, 2), (1, 3)]
    ids = [delivery_span_id(task.id, n) for _, n in seen]
    assert len(set(ids)) == 3
    # A worker that does not trace neither counts the deliveries nor is told of them.
    giveback = Outcome(task.id, "giveback", attempt=task.attempts)
    await finish(broker, queue, "w", [giveback], task_ttl_s=60, dead_ttl_s=60)
    provider = STATE.provider
    STATE.install(None)
    try:
        (untraced,), _, _ = await fetch(broker, queue, "w", 1, 30_000)
    finally:
        STATE.install(provider)
    stored = await broker.redis.hget(QueueKeys(queue).task(task.id), "deliveries")
    assert (untraced.id, untraced.deliveries, stored) == (task.id, 0, "3")
    span = tracing.start_attempt(task.id, queue, "t", task.attempts, task.traceparent, 3)
    tracing.end_attempt(span, "succeeded", {})
    (last,) = spans.get_finished_spans()[-1:]
    assert [link.context.span_id for link in last.links] == [ids[1]]


# --------------------------------------------------------------------------- a process's tracing

#: Run in a fresh interpreter: the global tracer provider can be set once per process.
PROCESS = """
import json, os, socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)  # connections are queued by the kernel and never answered
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
from taskforge import tracing
from taskforge.tracing.setup import STATE
assert tracing.configure("taskforge-test")
for _ in range(5000):  # more than the batch processor's queue holds: the rest are dropped
    with tracing.sending(["q"], ["t"], 1, None):
        pass
print(json.dumps(dict(STATE.provider.resource.attributes)), flush=True)
tracing.shutdown()
print("stopped", flush=True)
"""


def run_process(**env: str) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    # An export timeout far past the test's: only shutdown's own bound lets the process end.
    clean.update({"OTEL_EXPORTER_OTLP_TIMEOUT": "120", "OTEL_BSP_SCHEDULE_DELAY": "50", **env})
    done = subprocess.run([sys.executable, "-c", PROCESS], env=clean, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    attributes, stopped = done.stdout.splitlines()
    assert stopped == "stopped"
    return dict(json.loads(attributes))


def test_a_collector_that_never_answers_neither_blocks_spans_nor_holds_shutdown() -> None:
    attributes = run_process()
    assert attributes["service.name"] == "taskforge-test"
    assert attributes["service.version"]


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"OTEL_RESOURCE_ATTRIBUTES": "k8s.service.name=other,team=a"}, "taskforge-test"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"}, "from-attributes"),
        ({"OTEL_SERVICE_NAME": "from-name", "OTEL_RESOURCE_ATTRIBUTES": "team=a"}, "from-name"),
    ],
)
def test_the_service_name_defaults_only_where_the_environment_names_none(
    env: dict[str, str], name: str
) -> None:
    attributes = run_process(**env)
    assert attributes["service.name"] == name
    assert attributes.get("team", "a") == "a"


# --------------------------------------------------------------------------- handlers


async def test_handlers_sync_or_async_run_inside_the_attempts_span(
    spans: InMemorySpanExporter,
) -> None:
    registry = Registry()
    seen: dict[str, tuple[str | None, str]] = {}

    @registry.handler("t.sync")
    def in_a_thread(payload: Any, ctx: TaskContext) -> None:
        seen["sync"] = (tracing.current_traceparent(), ctx.traceparent)

    @registry.handler("t.async")
    async def on_the_loop(payload: Any, ctx: TaskContext) -> None:
        seen["async"] = (tracing.current_traceparent(), ctx.traceparent)

    settings = HandlerSettings(redis_url="redis://unused", env="dev")
    with ThreadPoolExecutor(1) as threads:
        async with httpx.AsyncClient() as http:
            env = ExecutionEnv(registry, settings, http, threads)
            for kind in ("sync", "async"):
                task = FetchedTask(f"q.{kind}", "q", f"t.{kind}", "{}", 1, None, "", None, PARENT,
                                   deliveries=1)  # fmt: skip
                span = tracing.start_attempt(task.id, "q", task.type, 1, PARENT, 1)
                assert span is not None
                outcome = await tracing.within(span, execute(task, env))
                tracing.end_attempt(span, outcome.kind, {})
                expected = f"00-{TRACE_ID}-{delivery_span_id(task.id, 1):016x}-01"
                assert seen[kind] == (expected, expected), kind
