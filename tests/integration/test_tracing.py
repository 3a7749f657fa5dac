"""OpenTelemetry traces of a task, end to end, as a real Jaeger v2 stores them.

The local stack (``scripts.devstack.Stack``: gateway, api, worker, scheduler, Redis as real
processes) exports over OTLP/HTTP to a real Jaeger (``tests.support.jaeger``); the tests read the
spans back over Jaeger's query API. One request with a known ``traceparent`` goes through the
gateway and runs a ``fail`` task that fails its first attempt and succeeds on the second; its
trace must hold every hop in parent/child order, the retry's link, and none of the payload.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from scripts.devstack import Stack
from tests.client.conftest import start_stack
from tests.e2e.helpers import wait_for_state
from tests.support.jaeger import Jaeger, Span, describe_span, trace_tree
from tests.support.ports import free_port
from tests.support.processes import wait_until

# Setting up builds Jaeger when bin/jaeger is missing or stale (minutes on a cold module cache)
# and starts two stacks: only the tests themselves are held to the usual timeout.
pytestmark = pytest.mark.timeout(120, func_only=True)

#: The batch span processor's delay (ms): spans reach Jaeger within a fraction of a second.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200"}
#: A retry due soon after the failed attempt, without jitter.
FAST_RETRY = {"kind": "fixed", "base_s": 0.3, "cap_s": 0.3, "jitter": False}
QUEUE = "default"


@pytest.fixture(scope="module")
def traced_stack(jaeger: Jaeger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("traced-stack"),
        OTEL_EXPORTER_OTLP_ENDPOINT=jaeger.otlp_endpoint,
        **FAST_EXPORT,
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def admin(traced_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {traced_stack.admin_key}"}
    async with httpx.AsyncClient(base_url=traced_stack.url, headers=headers, timeout=30) as c:
        yield c


def one(spans: list[Span], what: str, match: Callable[[Span], bool]) -> Span:
    """The single span that ``match`` selects; the failure lists the whole trace."""
    found = [s for s in spans if match(s)]
    tree = "\n".join(trace_tree(spans))
    assert len(found) == 1, f"{len(found)} spans for {what}, expected 1; the trace:\n{tree}"
    return found[0]


def consumer(attempt: int) -> Callable[[Span], bool]:
    return lambda s: (
        s.service == "taskforge-worker"
        and s.kind == "consumer"
        and s.attributes.get("taskforge.task.attempt") == attempt
    )


def task_done(spans: list[Span]) -> bool:
    """Both worker attempts and the api's spans are in (the gateway's end first)."""
    has = {(s.service, s.kind) for s in spans}
    return (
        ("taskforge-gateway", "client") in has
        and ("taskforge-api", "producer") in has
        and len([s for s in spans if consumer(1)(s) or consumer(2)(s)]) == 2
    )


async def test_harness_reads_back_what_it_was_sent(jaeger: Jaeger) -> None:
    """The parser against Jaeger itself: kinds, status, parents, links and attribute types."""
    trace_id, root, child = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    now_ns = 1_000_000_000 * 1_700_000_000 + secrets.randbelow(10**9)
    spans: list[dict[str, Any]] = [
        {"traceId": trace_id, "spanId": root, "name": "root", "kind": 2,
         "startTimeUnixNano": str(now_ns), "endTimeUnixNano": str(now_ns + 1000),
         "attributes": [{"key": "n", "value": {"intValue": "7"}}]},
        {"traceId": trace_id, "spanId": child, "parentSpanId": root, "name": "child", "kind": 5,
         "startTimeUnixNano": str(now_ns + 10), "endTimeUnixNano": str(now_ns + 900),
         "status": {"code": 2, "message": "boom"},
         "links": [{"traceId": trace_id, "spanId": root}],
         "attributes": [{"key": "ok", "value": {"boolValue": False}},
                        {"key": "s", "value": {"stringValue": "x"}}]},
    ]  # fmt: skip
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "harness"}}]}
    jaeger.export([{"resource": resource, "scopeSpans": [{"scope": {}, "spans": spans}]}])

    got = await jaeger.wait_for_trace(trace_id, lambda found: len(found) == 2, timeout_s=15)
    by_name = {s.name: s for s in got}
    assert by_name["root"].kind == "server" and by_name["root"].parent_span_id is None
    assert by_name["root"].attributes == {"n": 7} and by_name["root"].service == "harness"
    assert by_name["child"].kind == "consumer" and by_name["child"].status == "error"
    assert by_name["child"].parent_span_id == root and by_name["child"].span_id == child
    assert [(link.trace_id, link.span_id) for link in by_name["child"].links] == [(trace_id, root)]
    assert by_name["child"].attributes == {"ok": False, "s": "x"}
    assert jaeger.trace(secrets.token_hex(16)) == []


async def test_one_trace_from_gateway_to_both_worker_attempts(
    admin: httpx.AsyncClient, jaeger: Jaeger
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    secret = "payload-secret-" + secrets.token_hex(8)
    body = {"type": "fail", "queue": QUEUE, "payload": {"times": 1, "note": secret},
            "max_retries": 3, "backoff": FAST_RETRY}  # fmt: skip
    created = await admin.post(
        "/v1/tasks", json=body, headers={"traceparent": f"00-{trace_id}-{caller_span}-01"}
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    record = await wait_for_state(admin, task_id, {"succeeded", "dead"})
    assert record["state"] == "succeeded" and record["attempts"] == 2, record

    spans = await jaeger.wait_for_trace(trace_id, task_done, timeout_s=30)
    assert {s.trace_id for s in spans} == {trace_id}
    api_server, producer = check_request_spans(spans, caller_span)
    assert_task_attributes(producer, task_id)
    # The record keeps the PRODUCER's context: the worker's attempts continue from it.
    assert record["traceparent"].split("-")[:3] == ["00", trace_id, producer.span_id], record
    check_attempt_spans(spans, producer, task_id)
    assert_no_payload(spans, secret, jaeger.trace_document(trace_id))
    # Last, so that a wrong name does not hide what the checks above would find.
    assert api_server.name == "POST /v1/tasks", describe_span(api_server)


def check_request_spans(spans: list[Span], caller_span: str) -> tuple[Span, Span]:
    """gateway SERVER -> gateway CLIENT -> api SERVER -> PRODUCER -> redis enqueue."""
    gw_server = one(spans, "gateway SERVER", lambda s: s.service == "taskforge-gateway"
                    and s.kind == "server")  # fmt: skip
    assert gw_server.name == "POST /v1/tasks" and gw_server.parent_span_id == caller_span
    # The proxy call, not the admission's Redis round trip (a CLIENT span of the gateway too).
    gw_client = one(spans, "gateway CLIENT (proxy)", lambda s: s.service == "taskforge-gateway"
                    and s.kind == "client" and "http.request.method" in s.attributes)  # fmt: skip
    assert gw_client.name == "POST" and gw_client.parent_span_id == gw_server.span_id
    api_server = one(spans, "api SERVER", lambda s: s.service == "taskforge-api"
                     and s.kind == "server")  # fmt: skip
    assert api_server.parent_span_id == gw_client.span_id, describe_span(api_server)
    producer = one(spans, "api PRODUCER", lambda s: s.kind == "producer")
    assert producer.service == "taskforge-api" and producer.name == f"send {QUEUE}"
    assert producer.parent_span_id == api_server.span_id
    assert producer.attributes.get("messaging.system") == "taskforge"
    call = one(spans, "redis enqueue", lambda s: s.name == "redis enqueue")
    assert call.kind == "client" and call.parent_span_id == producer.span_id, describe_span(call)
    assert call.attributes.get("db.system.name") == "redis", describe_span(call)
    # The key's check and rate limit: one admission round trip, or more for an uncached key.
    admission = [
        s for s in spans if s.service == "taskforge-gateway" and s.name.startswith("redis ")
    ]
    assert admission, "no Redis span in the gateway"
    assert {s.parent_span_id for s in admission} == {gw_server.span_id}, admission
    return api_server, producer


def check_attempt_spans(spans: list[Span], producer: Span, task_id: str) -> None:
    """Two CONSUMER spans under the PRODUCER: a failed attempt, then one linked to it."""
    first, second = one(spans, "attempt 1", consumer(1)), one(spans, "attempt 2", consumer(2))
    for attempt in (first, second):
        assert attempt.name == "process fail" and attempt.parent_span_id == producer.span_id
        assert_task_attributes(attempt, task_id)
    assert first.attributes.get("taskforge.task.outcome") == "retry" and first.status == "error"
    assert second.attributes.get("taskforge.task.outcome") == "succeeded"
    assert second.status != "error"
    links = [(link.trace_id, link.span_id) for link in second.links]
    assert links == [(first.trace_id, first.span_id)], describe_span(second)


def assert_task_attributes(span: Span, task_id: str) -> None:
    attributes = span.attributes
    assert attributes.get("taskforge.task.id") == task_id, describe_span(span)
    assert attributes.get("taskforge.task.queue") == QUEUE, describe_span(span)
    assert attributes.get("taskforge.task.type") == "fail", describe_span(span)


def assert_no_payload(spans: list[Span], secret: str, document: dict[str, Any] | None) -> None:
    """The payload's value is in no attribute, link, event or resource of the trace."""
    for span in spans:
        linked = [value for link in span.links for value in link.attributes.values()]
        values = [*span.attributes.values(), *linked]
        assert not any(secret in str(value) for value in values), describe_span(span)
    assert secret not in json.dumps(document)


async def test_scheduler_promote_pass_is_a_span(admin: httpx.AsyncClient, jaeger: Jaeger) -> None:
    """The pass that moved the retry's delayed task is a root span of the scheduler's own.

    It ran between the first attempt's end and the second's start: the pass that promoted
    this task, not one of an earlier test.
    """
    trace_id = secrets.token_hex(16)
    body = {"type": "fail", "queue": QUEUE, "payload": {"times": 1}, "max_retries": 2,
            "backoff": FAST_RETRY}  # fmt: skip
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    task_id = (await admin.post("/v1/tasks", json=body, headers=headers)).json()["id"]
    assert (await wait_for_state(admin, task_id, {"succeeded", "dead"}))["state"] == "succeeded"
    spans = await jaeger.wait_for_trace(trace_id, task_done, timeout_s=30)
    first, second = one(spans, "attempt 1", consumer(1)), one(spans, "attempt 2", consumer(2))

    def promoting() -> list[Span]:
        traces = jaeger.find_traces("taskforge-scheduler", "promote")
        return [s for found in traces.values() for s in found
                if s.name == "promote" and s.attributes.get("taskforge.task.queue") == QUEUE
                and first.end_ns <= s.start_ns <= second.start_ns]  # fmt: skip

    passes: list[Span] = await wait_until(
        promoting, 30, interval_s=0.2, message=lambda: f"no promote span\n{jaeger.describe()}"
    )
    for span in passes:
        assert span.kind == "internal" and span.parent_span_id is None, describe_span(span)
        assert span.trace_id != trace_id and span.attributes["taskforge.tasks.moved"] >= 1


async def test_unreachable_collector_never_reaches_a_user(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Export to a port where nothing listens: requests and tasks go on as without tracing."""
    closed = f"http://127.0.0.1:{free_port()}"
    stack = start_stack(
        tmp_path_factory.mktemp("untraced-stack"), OTEL_EXPORTER_OTLP_ENDPOINT=closed, **FAST_EXPORT
    )
    try:
        headers = {"Authorization": f"Bearer {stack.admin_key}"}
        async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=30) as admin:
            body = {"type": "fail", "payload": {"times": 1}, "max_retries": 2,
                    "backoff": FAST_RETRY}  # fmt: skip
            trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
            traced = {"traceparent": f"00-{trace_id}-{caller_span}-01"}
            created = await admin.post("/v1/tasks", json=body, headers=traced)
            assert created.status_code == 201, created.text
            record = await wait_for_state(admin, created.json()["id"], {"succeeded", "dead"})
            assert record["state"] == "succeeded" and record["attempts"] == 2
            # Tracing is on (spans were made and sent to nowhere): the record names a span of
            # the api, not the caller's, which it would keep unchanged with tracing off.
            _, stored_trace, stored_span, _ = record["traceparent"].split("-")
            assert stored_trace == trace_id and stored_span != caller_span, record
            echo = await admin.post("/v1/tasks", json={"type": "echo", "payload": [1]})
            assert echo.status_code == 201, echo.text
            done = await wait_for_state(admin, echo.json()["id"], {"succeeded", "dead"})
            assert done["result"] == [1]
            assert (await admin.get("/v1/queues")).status_code == 200
        assert {name: p.poll() for name, p in stack.procs.items()} == dict.fromkeys(stack.procs)
    finally:
        stack.stop()
