"""The spans TaskForge records (docs/tracing.md), each helper a no-op while tracing is off.

Attributes name tasks by id, queue, type and attempt; never a payload, a result, an error
message (it may quote either) or a key.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from taskforge.errors import RedisUnavailable, ScriptError, TaskForgeError
from taskforge.tracing.ids import FORCED, delivery_span_id, task_trace_id
from taskforge.tracing.setup import STATE

_PROPAGATOR = TraceContextTextMapPropagator()
T = TypeVar("T")
#: Outcomes that end an attempt's span with an error status.
_FAILED = frozenset({"retry", "dead"})


def enabled() -> bool:
    """Whether spans are recorded and exported (see :mod:`taskforge.tracing.setup`)."""
    return STATE.provider is not None


def tracer() -> trace.Tracer:
    """TaskForge's tracer on the configured provider (a no-op tracer while tracing is off)."""
    return STATE.tracer or trace.NoOpTracer()


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` naming ``span``, or None for an invalid span."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_traceparent(default: str | None = None) -> str | None:
    """The ``traceparent`` of the active span when tracing is on, else ``default``."""
    if STATE.provider is None:
        return default
    return traceparent_of(trace.get_current_span()) or default


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the active span, for log lines; None when off or none."""
    if STATE.provider is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    return (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") if ctx.is_valid else None


def extract(traceparent: str | None, tracestate: str | None = None) -> Context:
    """A context whose parent is the remote span ``traceparent`` names (empty when invalid)."""
    carrier = {"traceparent": traceparent or ""}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier, context=Context())


class _Activation:
    """Makes a span the active one for a ``with`` block."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.token: object = None

    def __enter__(self) -> None:
        self.token = context.attach(trace.set_span_in_context(self.span))

    def __exit__(self, *exc: object) -> None:
        context.detach(self.token)  # type: ignore[arg-type]


#: Reused: with tracing off, no helper makes an object (``as`` binds None).
_NOTHING: nullcontext[None] = nullcontext()


def activated(span: Span | None) -> AbstractContextManager[None]:
    """Make ``span`` the active span for a ``with`` block (nothing when None)."""
    return _NOTHING if span is None else _Activation(span)


async def within(span: Span, work: Awaitable[T]) -> T:
    """Await ``work`` with ``span`` active."""
    with _Activation(span):
        return await work


def error_type(detail: str) -> str:
    """The exception class an outcome's stored error starts with (``"ValueError: ..."``)."""
    head = detail.split(":", 1)[0].strip()
    return head if head.replace(".", "").replace("_", "").isalnum() else "error"


def mark_failed(span: Span, exc: BaseException) -> None:
    """An error status naming only the exception's class: its message may quote a payload or
    a key (an idempotency conflict names its key), and the SDK's own recording would keep it."""
    name = type(exc).__qualname__
    span.set_attribute("error.type", name)
    span.set_status(Status(StatusCode.ERROR, name))


def is_failure(exc: BaseException) -> bool:
    """Whether an exception leaving a span makes it an error span: not a cancellation (a lost
    lease, a client gone: OpenTelemetry's own ``use_span`` leaves those too), nor a refusal
    TaskForge answers as a 4xx (an idempotency conflict, a queue limit)."""
    if not isinstance(exc, Exception):
        return False
    return not isinstance(exc, TaskForgeError) or isinstance(exc, (RedisUnavailable, ScriptError))


@contextmanager
def active_span(
    name: str, kind: SpanKind, attributes: dict[str, Any], parent: Context | None = None
) -> Iterator[Span]:
    """A span made active for the block and ended after it; a failure leaving it marks it
    (:func:`mark_failed`)."""
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        try:
            yield span
        except BaseException as exc:
            if is_failure(exc):
                mark_failed(span, exc)
            raise


def sending(
    queues: list[str], types: list[str], count: int, traceparent: str | None
) -> AbstractContextManager[Span | None]:
    """The PRODUCER span around one enqueue call (``send {queue}``); None when tracing is off.

    Its parent is the active span (the api's request) or, outside any, ``traceparent``.
    """
    if STATE.provider is None:
        return _NOTHING
    parent = None if trace.get_current_span().get_span_context().is_valid else extract(traceparent)
    attributes: dict[str, Any] = {
        "messaging.system": "taskforge",
        "messaging.operation.type": "send",
    }
    if len(queues) == 1:
        attributes["messaging.destination.name"] = attributes["taskforge.task.queue"] = queues[0]
    if len(types) == 1:
        attributes["taskforge.task.type"] = types[0]
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    name = f"send {queues[0]}" if len(queues) == 1 else "send"
    return active_span(name, SpanKind.PRODUCER, attributes, parent)


def redis_operation(what: str) -> AbstractContextManager[Span | None]:
    """A CLIENT span ``redis <what>`` around one broker operation (a script call, a read), only
    under a recording span (a request's or a task's): the worker's and the scheduler's own batch
    calls would each start a trace of one. Off, the same shared no-op as :func:`activated`."""
    if STATE.provider is None or not trace.get_current_span().is_recording():
        return _NOTHING
    attributes = {"db.system.name": "redis", "taskforge.redis.operation": what}
    return active_span(f"redis {what}", SpanKind.CLIENT, attributes)


def http_client(method: str, route: str, server: str) -> AbstractContextManager[Span | None]:
    """A CLIENT span, made active, around one proxied call (the gateway's to the api), so that
    :func:`current_traceparent` inside it names the call; None when tracing is off."""
    if STATE.provider is None:
        return _NOTHING
    attributes = {"http.request.method": method, "url.template": route, "server.address": server}
    return active_span(method, SpanKind.CLIENT, attributes)


def record_status(span: Span | None, status: int) -> None:
    """Put an HTTP answer's status on a CLIENT span; 5xx is an error."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
        span.set_attribute("error.type", str(status))


def start_attempt(
    task_id: str, queue: str, task_type: str, attempt: int, traceparent: str, delivery: int
) -> Span | None:
    """The CONSUMER span of one attempt, child of the context stored at enqueue; a delivery
    after the first links to the one before it (a retry, a reclaim after its worker died, a
    rerun after a give-back or a requeue). ``delivery`` is fetch.lua's count (0 when it was not
    counted: the attempt number stands in). Not made active: the caller does that around the
    handler with :func:`activated`."""
    if STATE.provider is None:
        return None
    parent = extract(traceparent)
    parent_ctx = trace.get_current_span(parent).get_span_context()
    trace_id = parent_ctx.trace_id if parent_ctx.is_valid else task_trace_id(task_id)
    flags = parent_ctx.trace_flags if parent_ctx.is_valid else TraceFlags(TraceFlags.SAMPLED)
    number = delivery or attempt
    links = []
    if number > 1:
        earlier = SpanContext(trace_id, delivery_span_id(task_id, number - 1), True, flags)
        links.append(Link(earlier, {"taskforge.link": "previous_attempt"}))
    attributes: dict[str, Any] = {
        "messaging.system": "taskforge",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": task_id,
        "taskforge.task.id": task_id,
        "taskforge.task.queue": queue,
        "taskforge.task.type": task_type,
        "taskforge.task.attempt": attempt,
        "taskforge.task.delivery": number,
    }
    forced = FORCED.set((delivery_span_id(task_id, number), trace_id))
    try:
        return tracer().start_span(
            f"process {task_type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
    finally:
        FORCED.reset(forced)


def end_attempt(span: Span | None, outcome: str, attributes: Mapping[str, Any]) -> None:
    """End an attempt's span with its outcome (``succeeded``, ``retry``, ``dead``, ...)."""
    if span is None:
        return
    span.set_attribute("taskforge.task.outcome", outcome)
    for name, value in attributes.items():
        span.set_attribute(name, value)
    if outcome in _FAILED:
        span.set_status(Status(StatusCode.ERROR, str(attributes.get("error.type", outcome))))
    span.end()


def record_pass(name: str, started_ns: int, attributes: Mapping[str, Any]) -> None:
    """An INTERNAL root span for a scheduler pass that already ran (only passes that moved
    tasks are recorded, so the span is made after the fact)."""
    if STATE.provider is None:
        return
    span = tracer().start_span(
        name, context=Context(), kind=SpanKind.INTERNAL, attributes=attributes,
        start_time=started_ns,
    )  # fmt: skip
    span.end(end_time=time.time_ns())
