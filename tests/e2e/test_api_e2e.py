"""Every route through the gateway: tasks, retries into the DLQ and back, cancel, consume-once."""

from __future__ import annotations

import asyncio

import httpx

from tests.e2e.helpers import assert_problem, create_key, wait_for_state

FAST_RETRY = {"kind": "fixed", "base_s": 0.1, "cap_s": 0.1, "jitter": False}


async def test_enqueue_runs_on_worker(admin: httpx.AsyncClient) -> None:
    created = await admin.post("/v1/tasks", json={"type": "echo", "payload": {"hello": "e2e"}})
    assert created.status_code == 201, created.text
    record = await wait_for_state(admin, created.json()["id"], {"succeeded", "dead"})
    assert record["state"] == "succeeded"
    assert record["result"] == {"hello": "e2e"}
    assert [e["event"] for e in record["events"]] == ["enqueued", "started", "succeeded"]


async def test_retries_end_in_dlq_and_requeue(admin: httpx.AsyncClient) -> None:
    body = {"type": "fail", "payload": {"message": "e2e boom"}, "max_retries": 1,
            "backoff": FAST_RETRY}  # fmt: skip
    task_id = (await admin.post("/v1/tasks", json=body)).json()["id"]
    record = await wait_for_state(admin, task_id, {"dead"})
    assert record["attempts"] == 2 and record["dead_reason"] == "retries_exhausted"
    assert "e2e boom" in record["last_error"]
    events = [e["event"] for e in record["events"]]
    assert events.count("failed") == 2 and "retry_scheduled" in events
    listed = (await admin.get("/v1/dlq", params={"queue": "default", "limit": 500})).json()
    assert task_id in [t["id"] for t in listed["items"]]
    assert (await admin.post(f"/v1/dlq/{task_id}/requeue")).json() == {"count": 1}
    # The task was dead already: wait for its second life to end, with a fresh budget.
    async with asyncio.timeout(30):
        while True:
            record = await wait_for_state(admin, task_id, {"dead"})
            events = [e["event"] for e in record["events"]]
            if events.count("failed") == 4:
                break
            await asyncio.sleep(0.1)
    assert events.count("requeued") == 1
    assert events.index("requeued") < len(events) - events[::-1].index("failed") - 1
    assert record["attempts"] == 2 and record["dead_reason"] == "retries_exhausted"


async def test_idempotent_enqueue(admin: httpx.AsyncClient, unique_queue: str) -> None:
    body = {"type": "echo", "queue": unique_queue, "payload": 1}
    headers = {"Idempotency-Key": f"key-{unique_queue}"}
    first = await admin.post("/v1/tasks", json=body, headers=headers)
    second = await admin.post("/v1/tasks", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    conflict = await admin.post("/v1/tasks", json={**body, "payload": 2}, headers=headers)
    assert_problem(conflict, 409)
    stats = (await admin.get(f"/v1/queues/{unique_queue}")).json()
    assert stats["queued"] == 1


async def test_cancel_scheduled_and_running(admin: httpx.AsyncClient) -> None:
    later = (await admin.post("/v1/tasks", json={"type": "echo", "delay_s": 300})).json()
    assert later["state"] == "scheduled"
    assert (await admin.delete(f"/v1/tasks/{later['id']}")).json()["status"] == "cancelled"
    assert (await admin.get(f"/v1/tasks/{later['id']}")).json()["state"] == "cancelled"
    assert_problem(await admin.delete(f"/v1/tasks/{later['id']}"), 409)
    slow = (
        await admin.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 60}})
    ).json()
    await wait_for_state(admin, slow["id"], {"running"})
    assert (await admin.delete(f"/v1/tasks/{slow['id']}")).json()["status"] == "cancel_requested"
    record = await wait_for_state(admin, slow["id"], {"cancelled"})
    assert record["attempts"] == 1


async def test_consume_once_and_legacy_routes(admin: httpx.AsyncClient, unique_queue: str) -> None:
    legacy = await admin.post("/enqueue", json={"task_type": "echo", "queue": unique_queue,
                                                "payload": "old"})  # fmt: skip
    assert legacy.status_code == 200 and legacy.json()["status"] == "queued"
    task_id = legacy.json()["task_id"]
    assert (await admin.get(f"/tasks/{task_id}")).json()["state"] == "queued"
    consumed = (await admin.post("/consume-once", params={"queue": unique_queue})).json()
    assert consumed["task_id"] == task_id and consumed["outcome"] == "succeeded"
    assert consumed["task"]["result"] == "old"
    metrics = (await admin.get("/metrics")).json()
    assert metrics["queues"][unique_queue]["counters"]["succeeded"] == 1

    await admin.post("/v1/tasks", json={"type": "no-such-type", "queue": unique_queue})
    dead = (await admin.post("/consume-once", params={"queue": unique_queue})).json()
    assert dead["outcome"] == "dead" and dead["task"]["dead_reason"] == "unknown_task_type"
    assert (await admin.get("/dlq", params={"queue": unique_queue})).json()["total"] == 1
    assert_problem(await admin.post("/v1/dlq/requeue", json={"queue": unique_queue}), 422)
    requeued = await admin.post("/v1/dlq/requeue", params={"queue": unique_queue})
    assert requeued.json()["count"] == 1
    await admin.post("/consume-once", params={"queue": unique_queue})
    assert (await admin.delete("/dlq", params={"queue": unique_queue})).json()["count"] == 1
    assert (await admin.get("/v1/dlq", params={"queue": unique_queue})).json()["total"] == 0


async def test_batch_and_queues(admin: httpx.AsyncClient, unique_queue: str) -> None:
    tasks = [{"type": "echo", "queue": unique_queue, "payload": i} for i in range(10)]
    created = await admin.post("/v1/tasks/batch", json={"tasks": tasks})
    assert created.status_code == 201 and len(created.json()["tasks"]) == 10
    bad = await admin.post("/v1/tasks/batch", json={"tasks": [*tasks, {"type": "bad type"}]})
    assert_problem(bad, 422)
    assert (await admin.get(f"/v1/queues/{unique_queue}")).json()["queued"] == 10


#: Bodies refused at the door, as raw JSON text (a client library would refuse to write some).
HOSTILE_BODIES = [
    '{"type": "echo", "queue": "%s", "payload": ' + "[" * 256 + "]" * 256 + "}",
    '{"type": "echo", "queue": "%s", "payload": "\\ud800"}',
    '{"type": "echo", "queue": "%s", "payload": {"n": NaN}}',
    '{"type": "echo", "queue": "%s", "payload": {"n": Infinity}}',
    '{"type": "echo", "queue": "%s", "payload": {"n": 1e400}}',
    '{"type": "echo", "queue": "%s", "max_retries": true}',
    '{"type": "echo", "queue": "%s", "delay_s": "5"}',
    '{"type": "echo", "queue": "%s", "eta": "9999-01-01T00:00:00Z"}',
    '{"type": "bad type!", "queue": "%s"}',
]


async def test_bad_input_is_4xx_and_changes_nothing(
    admin: httpx.AsyncClient, unique_queue: str
) -> None:
    json_type = {"content-type": "application/json"}
    for raw in HOSTILE_BODIES:
        body = (raw % unique_queue).encode()
        for route in ("/v1/tasks", "/enqueue"):
            problem = assert_problem(await admin.post(route, content=body, headers=json_type), 422)
            assert problem["errors"][0]["loc"][0] == "body", problem
        batch = b'{"tasks": [' + body + b"]}"
        assert_problem(await admin.post("/v1/tasks/batch", content=batch, headers=json_type), 422)
    assert_problem(await admin.post("/v1/tasks", json={"type": "x", "queue": "bad queue"}), 422)
    assert_problem(
        await admin.post("/v1/tasks", content=b"type=x", headers={"content-type": "text/plain"}),
        415,
    )
    assert_problem(await admin.get("/v1/tasks/not-a-task-id"), 404)
    # Nothing above was written: the queue was never created, no DLQ action ran.
    assert_problem(await admin.get(f"/v1/queues/{unique_queue}"), 404)
    listing = (await admin.get("/v1/queues", params={"limit": 1000})).json()
    assert listing["next_cursor"] is None
    assert unique_queue not in [q["queue"] for q in listing["queues"]]
    before = (await admin.get("/v1/dlq", params={"limit": 1})).json()["total"]
    assert_problem(await admin.post("/v1/dlq/requeue"), 422)
    assert_problem(await admin.delete("/v1/dlq"), 422)
    assert (await admin.get("/v1/dlq", params={"limit": 1})).json()["total"] == before


async def test_idempotency_keys_are_per_api_key(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, unique_queue: str
) -> None:
    alice = {"X-API-Key": await create_key(admin, ["tasks:write", "tasks:read"])}
    bob = {"X-API-Key": await create_key(admin, ["tasks:write", "tasks:read"])}
    body = {"type": "echo", "queue": unique_queue, "delay_s": 600}
    shared = {"Idempotency-Key": "order-42"}
    first = await anonymous.post("/v1/tasks", json=body, headers={**alice, **shared})
    other = await anonymous.post(
        "/v1/tasks", json={**body, "payload": 1}, headers={**bob, **shared}
    )
    assert (first.status_code, other.status_code) == (201, 201), other.text
    assert first.json()["id"] != other.json()["id"]
    conflict = await anonymous.post(
        "/v1/tasks", json={**body, "payload": 2}, headers={**bob, **shared}
    )
    detail = assert_problem(conflict, 409)["detail"]
    assert other.json()["id"] in detail and first.json()["id"] not in detail
