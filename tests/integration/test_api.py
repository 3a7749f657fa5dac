"""The api app over ASGI against real Redis: routes, problem documents, the gateway credential."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from taskforge.settings import ApiSettings
from taskforge_api.app import create_app

TOKEN = "internal-token-for-tests-0123456789"


@asynccontextmanager
async def api_client(redis_url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The api app in-process over ASGI, with the gateway's credential on every request."""
    options: dict[str, Any] = {
        "max_batch_size": 5, "max_body_bytes": 4096, "max_payload_bytes": 1024, **overrides,
    }  # fmt: skip
    settings = ApiSettings(redis_url=redis_url, env="dev", internal_token=TOKEN, **options)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"X-TaskForge-Internal-Token": TOKEN}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=headers
        ) as client:
            yield client


@pytest.fixture
async def api(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(redis_url) as client:
        yield client


def assert_problem(
    response: httpx.Response, status: int, kind: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if kind:
        assert body["type"].endswith("/" + kind), body
    return body


async def test_enqueue_status_cancel(api: httpx.AsyncClient, queue_name: str) -> None:
    created = await api.post("/v1/tasks", json={"type": "echo", "queue": queue_name, "delay_s": 60})
    assert created.status_code == 201
    task = created.json()
    assert task["state"] == "scheduled" and task["created"] is True
    assert created.headers["location"] == f"/v1/tasks/{task['id']}"
    status = (await api.get(f"/v1/tasks/{task['id']}")).json()
    assert status["state"] == "scheduled" and status["queue"] == queue_name
    assert [e["event"] for e in status["events"]] == ["scheduled"]
    cancelled = await api.delete(f"/v1/tasks/{task['id']}")
    assert cancelled.json() == {"id": task["id"], "status": "cancelled"}
    assert_problem(await api.delete(f"/v1/tasks/{task['id']}"), 409, "task-not-cancellable")
    assert_problem(await api.get(f"/v1/tasks/{queue_name}.{'0' * 32}"), 404, "task-not-found")
    assert_problem(await api.get("/v1/tasks/garbage"), 404, "task-not-found")


async def test_idempotency_header(api: httpx.AsyncClient, queue_name: str) -> None:
    body = {"type": "echo", "queue": queue_name, "payload": {"n": 1}}
    first = await api.post("/v1/tasks", json=body, headers={"Idempotency-Key": "abc"})
    again = await api.post("/v1/tasks", json=body, headers={"Idempotency-Key": "abc"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["created"] is False
    other = {**body, "payload": {"n": 2}}
    assert_problem(
        await api.post("/v1/tasks", json=other, headers={"Idempotency-Key": "abc"}),
        409,
        "idempotency-conflict",
    )


async def test_validation_errors_are_422_problems(api: httpx.AsyncClient, queue_name: str) -> None:
    body = assert_problem(
        await api.post("/v1/tasks", json={"type": "bad type!", "queue": "no spaces"}), 422
    )
    fields = {tuple(e["loc"]) for e in body["errors"]}
    assert ("body", "type") in fields and ("body", "queue") in fields
    assert_problem(await api.post("/v1/tasks", json={"type": "x", "surprise": 1}), 422)
    both = {"type": "x", "delay_s": 1, "eta": "2030-01-01T00:00:00Z"}
    assert_problem(await api.post("/v1/tasks", json=both), 422)
    assert_problem(await api.post("/v1/tasks", json={"type": "x", "payload": "x" * 2000}), 422)


async def test_size_and_media_type(api: httpx.AsyncClient) -> None:
    assert_problem(
        await api.post(
            "/v1/tasks", content=b"{}" + b" " * 5000, headers={"content-type": "application/json"}
        ),
        413,
    )
    assert_problem(
        await api.post("/v1/tasks", content=b"type=x", headers={"content-type": "text/plain"}), 415
    )
    assert_problem(
        await api.post(
            "/v1/tasks", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )


async def test_gateway_credential_required(api: httpx.AsyncClient) -> None:
    for headers in ({"X-TaskForge-Internal-Token": "wrong"}, {"X-TaskForge-Internal-Token": ""}):
        assert_problem(await api.get("/v1/queues", headers=headers), 401)
    assert (
        await api.get("/healthz", headers={"X-TaskForge-Internal-Token": ""})
    ).status_code == 200
    assert "X-TaskForge-Internal-Token" not in (await api.get("/openapi.json")).text


async def test_batch_all_or_nothing(api: httpx.AsyncClient, queue_name: str) -> None:
    good = [{"type": "echo", "queue": queue_name, "payload": i} for i in range(3)]
    created = await api.post("/v1/tasks/batch", json={"tasks": good})
    assert created.status_code == 201 and len(created.json()["tasks"]) == 3
    bad = [*good, {"type": "echo", "queue": "bad queue"}]
    assert_problem(await api.post("/v1/tasks/batch", json={"tasks": bad}), 422)
    too_many = [{"type": "echo", "queue": queue_name}] * 6
    assert_problem(await api.post("/v1/tasks/batch", json={"tasks": too_many}), 422)
    stats = (await api.get(f"/v1/queues/{queue_name}")).json()
    assert stats["queued"] == 3


async def test_queues_and_legacy_routes(api: httpx.AsyncClient, queue_name: str) -> None:
    enq = await api.post("/enqueue", json={"task_type": "echo", "queue": queue_name, "payload": 7})
    assert enq.status_code == 200 and enq.json()["status"] == "queued"
    task_id = enq.json()["task_id"]
    assert (await api.get(f"/tasks/{task_id}")).json()["payload"] == 7
    # The session's Redis holds many queues: ask for this one rather than the first page.
    assert (await api.get(f"/v1/queues/{queue_name}")).json()["queued"] == 1
    assert_problem(await api.get("/v1/queues/never-used-queue-xyz"), 404, "queue-not-found")
    metrics = (await api.get("/metrics")).json()
    assert metrics["totals"]["queued_now"] >= 1
    assert metrics["totals"]["enqueued"] >= 1
    consumed = (await api.post("/consume-once", params={"queue": queue_name})).json()
    assert consumed["task_id"] == task_id and consumed["outcome"] == "succeeded"
    assert consumed["task"]["result"] == 7 and consumed["task"]["worker"].startswith("api-")
    empty = (await api.post("/consume-once", params={"queue": queue_name})).json()
    assert empty == {"task_id": None, "outcome": None, "task": None}


async def test_consume_once_retry_dlq_requeue_purge(
    api: httpx.AsyncClient, queue_name: str
) -> None:
    body = {"type": "fail", "queue": queue_name, "max_retries": 0, "payload": {"message": "nope"}}
    task_id = (await api.post("/v1/tasks", json=body)).json()["id"]
    consumed = (await api.post("/consume-once", params={"queue": queue_name})).json()
    assert consumed["outcome"] == "dead"
    assert consumed["task"]["dead_reason"] == "retries_exhausted"
    page = (await api.get("/v1/dlq", params={"queue": queue_name})).json()
    assert [t["id"] for t in page["items"]] == [task_id] and page["total"] == 1
    assert (await api.get("/v1/dlq", params={"queue": queue_name, "reason": "timed_out"})).json()[
        "items"
    ] == []
    assert (await api.get("/dlq", params={"queue": queue_name})).json()["total"] == 1
    assert (await api.post(f"/v1/dlq/{task_id}/requeue")).json() == {"count": 1}
    assert_problem(await api.post(f"/v1/dlq/{task_id}/requeue"), 404)
    assert (await api.get(f"/v1/tasks/{task_id}")).json()["state"] == "queued"
    await api.post("/consume-once", params={"queue": queue_name})
    requeued = await api.post("/v1/dlq/requeue", params={"queue": queue_name})
    assert requeued.json() == {"count": 1}
    await api.post("/consume-once", params={"queue": queue_name})
    assert (await api.delete("/v1/dlq", params={"queue": queue_name})).json() == {"count": 1}
    assert_problem(await api.get(f"/v1/tasks/{task_id}"), 404)


async def test_dlq_pagination_across_queues(api: httpx.AsyncClient, queue_name: str) -> None:
    queues = [f"{queue_name}-a", f"{queue_name}-b"]
    for queue in queues:
        for _ in range(3):
            await api.post("/v1/tasks", json={"type": "no-such-handler", "queue": queue})
            await api.post("/consume-once", params={"queue": queue})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "task_type": "no-such-handler"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/dlq", params=params)).json()
        seen += [t["id"] for t in page["items"] if t["queue"] in queues]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 and len(set(seen)) == 6
    assert_problem(await api.get("/v1/dlq", params={"cursor": "nope:1"}), 422)


async def test_openapi_has_routes_and_examples(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path in (
        "/v1/tasks",
        "/v1/tasks/batch",
        "/v1/tasks/{task_id}",
        "/v1/queues",
        "/v1/dlq",
        "/v1/dlq/{task_id}/requeue",
        "/enqueue",
        "/consume-once",
        "/dlq",
    ):
        assert path in spec["paths"], path
    assert "examples" in spec["components"]["schemas"]["TaskCreate"]


async def test_errors_documented_as_problem_json(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    responses = spec["paths"]["/v1/tasks/{task_id}"]["get"]["responses"]
    assert "application/problem+json" in responses["404"]["content"]
    assert "application/json" in responses["200"]["content"]


async def test_undecodable_body_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/tasks", content=b'{"type": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)


async def test_consume_once_skips_cancelled_entries(
    api: httpx.AsyncClient, queue_name: str
) -> None:
    first = (await api.post("/v1/tasks", json={"type": "echo", "queue": queue_name})).json()
    second = (await api.post("/v1/tasks", json={"type": "echo", "queue": queue_name})).json()
    await api.delete(f"/v1/tasks/{first['id']}")
    consumed = (await api.post("/consume-once", params={"queue": queue_name})).json()
    assert consumed["task_id"] == second["id"]
    assert consumed["outcome"] == "succeeded"


async def test_consume_once_honours_a_cancel_while_running(redis_url: str, queue_name: str) -> None:
    settings = ApiSettings(redis_url=redis_url, env="dev", internal_token=TOKEN, lease_s=0.6)
    app = create_app(settings)
    headers = {"X-TaskForge-Internal-Token": TOKEN}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
        ) as api,
    ):
        body = {"type": "sleep", "queue": queue_name, "payload": {"seconds": 30}}
        task_id = (await api.post("/v1/tasks", json=body)).json()["id"]
        consuming = asyncio.create_task(api.post("/consume-once", params={"queue": queue_name}))
        async with asyncio.timeout(10):
            while (await api.get(f"/v1/tasks/{task_id}")).json()["state"] != "running":
                await asyncio.sleep(0.05)
        assert (await api.delete(f"/v1/tasks/{task_id}")).json()["status"] == "cancel_requested"
        consumed = (await asyncio.wait_for(consuming, 10)).json()
    assert consumed["outcome"] == "cancelled"
    assert consumed["task"]["state"] == "cancelled"
