"""Forwarding to the api: what goes up, what comes back, and upstream failures."""

from __future__ import annotations

import json
import logging
import re

import pytest
from prometheus_client import REGISTRY

from taskforge.logs import JsonFormatter
from tests.support.ports import free_port
from tests.unit.gateway.support import INTERNAL_TOKEN, MakeGateway, MakeKey, assert_problem, bearer
from tests.unit.gateway.upstream import Upstream, echoed_headers

TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


async def test_forwards_method_path_query_body_and_allowed_headers(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    secret, key = await make_key("tasks:write")
    body = {"type": "echo", "payload": {"n": 1}}
    headers = {
        **bearer(secret),
        "X-API-Key": secret,
        "Cookie": "session=abc",
        "Idempotency-Key": "idem-1",
        "Accept": "application/json",
        "X-Custom": "dropped",
        "X-TaskForge-Internal-Token": "forged",
        "X-TaskForge-Key-Id": "forged",
    }
    async with make_gateway() as gateway:
        response = await gateway.post("/v1/tasks?x=1&y=a%20b", json=body, headers=headers)

    assert response.status_code == 200
    echoed = response.json()
    assert (echoed["method"], echoed["path"], echoed["query"]) == (
        "POST",
        "/v1/tasks",
        "x=1&y=a%20b",
    )
    assert json.loads(echoed["body"]) == body
    sent = echoed_headers(echoed)
    assert sent["x-taskforge-internal-token"] == INTERNAL_TOKEN
    assert sent["x-taskforge-key-id"] == key.id
    assert sent["idempotency-key"] == "idem-1"
    assert sent["accept"] == "application/json"
    assert sent["content-type"] == "application/json"
    assert sent["x-request-id"] == response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", sent["x-request-id"])
    assert TRACEPARENT_RE.fullmatch(sent["traceparent"])
    for name in ("authorization", "x-api-key", "cookie", "x-custom"):
        assert name not in sent, name
    assert [v for k, v in echoed["headers"] if k == "x-taskforge-internal-token"] == [
        INTERNAL_TOKEN
    ]


async def test_returns_allowed_response_headers_only(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    secret, _ = await make_key("tasks:read")
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues", headers=bearer(secret))
    assert response.headers["location"] == "/v1/tasks/echoed"
    assert response.headers["idempotency-replayed"] == "false"
    assert response.headers["content-type"] == "application/json"
    assert "set-cookie" not in response.headers
    assert "x-upstream-secret" not in response.headers


async def test_raw_path_escapes_are_preserved(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    secret, _ = await make_key("tasks:read")
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/tasks/a%20b%3Fc", headers=bearer(secret))
    assert response.json()["raw_path"] == "/v1/tasks/a%20b%3Fc"
    assert response.json()["query"] == ""


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [("abc-123.X_y", True), ("has space", False), ("x" * 65, False), ("", False)],
)
async def test_request_id_is_kept_only_when_well_formed(
    make_gateway: MakeGateway, make_key: MakeKey, incoming: str, kept: bool
) -> None:
    secret, _ = await make_key("tasks:read")
    async with make_gateway() as gateway:
        response = await gateway.get(
            "/v1/queues", headers={**bearer(secret), "X-Request-Id": incoming}
        )
    returned = response.headers["x-request-id"]
    assert echoed_headers(response.json())["x-request-id"] == returned
    if kept:
        assert returned == incoming
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", returned)


async def test_request_id_is_on_gateway_errors_too(make_gateway: MakeGateway) -> None:
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues", headers={"X-Request-Id": "mine-1"})
    assert response.headers["x-request-id"] == "mine-1"
    assert assert_problem(response, 401, "unauthorized")["request_id"] == "mine-1"


async def test_valid_trace_context_is_continued(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    secret, _ = await make_key("tasks:read")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {**bearer(secret), "traceparent": parent, "tracestate": "vendor=1"}
    async with make_gateway() as gateway:
        sent = echoed_headers((await gateway.get("/v1/queues", headers=headers)).json())
    assert (sent["traceparent"], sent["tracestate"]) == (parent, "vendor=1")


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
async def test_invalid_trace_context_starts_a_new_trace(
    make_gateway: MakeGateway, make_key: MakeKey, bad: str
) -> None:
    secret, _ = await make_key("tasks:read")
    headers = {**bearer(secret), "traceparent": bad, "tracestate": "vendor=1"}
    async with make_gateway() as gateway:
        sent = echoed_headers((await gateway.get("/v1/queues", headers=headers)).json())
    assert TRACEPARENT_RE.fullmatch(sent["traceparent"])
    assert sent["traceparent"] != bad
    assert "tracestate" not in sent


def _upstream_errors(kind: str) -> float:
    value = REGISTRY.get_sample_value("taskforge_gateway_upstream_errors_total", {"kind": kind})
    return value or 0.0


async def test_api_unreachable_is_502(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    secret, _ = await make_key("tasks:read")
    before = _upstream_errors("connect")
    async with make_gateway(api_url=f"http://127.0.0.1:{free_port()}") as gateway:
        response = await gateway.get("/v1/queues", headers=bearer(secret))
    assert_problem(response, 502, "upstream-unavailable")
    assert "ratelimit-limit" in response.headers
    assert _upstream_errors("connect") == before + 1


async def test_api_too_slow_is_504(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    secret, _ = await make_key("tasks:read")
    before = _upstream_errors("timeout")
    async with make_gateway(upstream_timeout_s=0.3) as gateway:
        response = await gateway.get("/v1/queues?echo_delay_s=2", headers=bearer(secret))
    assert_problem(response, 504, "upstream-timeout")
    assert _upstream_errors("timeout") == before + 1


async def test_api_refusing_the_internal_token_is_502(
    make_gateway: MakeGateway, make_key: MakeKey, caplog: pytest.LogCaptureFixture
) -> None:
    secret, _ = await make_key("tasks:read")
    before = _upstream_errors("credential")
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues?echo_status=401", headers=bearer(secret))
    assert_problem(response, 502, "upstream-unavailable")
    assert "www-authenticate" not in response.headers
    assert _upstream_errors("credential") == before + 1
    assert "TASKFORGE_INTERNAL_TOKEN" in caplog.text
    assert INTERNAL_TOKEN not in caplog.text


@pytest.mark.parametrize("status", [503, 403, 404, 409, 422, 500])
async def test_api_errors_pass_through_unchanged(
    make_gateway: MakeGateway, make_key: MakeKey, status: int
) -> None:
    secret, _ = await make_key("tasks:read")
    async with make_gateway() as gateway:
        response = await gateway.get(f"/v1/queues?echo_status={status}", headers=bearer(secret))
    assert response.status_code == status
    assert response.json()["path"] == "/v1/queues"
    if status == 503:
        assert response.headers["retry-after"] == "7"


async def test_metrics_and_access_log_use_route_templates(
    make_gateway: MakeGateway, make_key: MakeKey, caplog: pytest.LogCaptureFixture
) -> None:
    secret, key = await make_key("tasks:read")
    labels = {"route": "/v1/tasks/{task_id}", "method": "GET", "status_class": "2xx"}
    before = REGISTRY.get_sample_value("taskforge_gateway_requests_total", labels) or 0.0
    caplog.set_level(logging.INFO, logger="taskforge_gateway.access")
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/tasks/q.secret-task-id", headers=bearer(secret))
    assert REGISTRY.get_sample_value("taskforge_gateway_requests_total", labels) == before + 1

    (record,) = [r for r in caplog.records if r.name == "taskforge_gateway.access"]
    line = json.loads(JsonFormatter("gateway").format(record))
    assert line["route"] == "/v1/tasks/{task_id}"
    assert (line["method"], line["status"]) == ("GET", 200)
    assert line["key_id"] == key.id
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["duration_ms"] >= 0
    assert secret not in caplog.text
    assert "secret-task-id" not in caplog.text


async def test_a_forwarded_header_with_a_line_break_is_400_and_never_sent(
    make_gateway: MakeGateway, make_key: MakeKey, upstream: Upstream
) -> None:
    secret, _ = await make_key("tasks:write")
    seen = len(upstream.seen)
    headers = {**bearer(secret), "Idempotency-Key": "k\r\nX-Injected: 1"}
    async with make_gateway() as gateway:
        response = await gateway.post("/v1/tasks", json={"type": "echo"}, headers=headers)
    assert_problem(response, 400, "bad-request")
    assert len(upstream.seen) == seen
