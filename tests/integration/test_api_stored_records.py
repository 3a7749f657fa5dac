"""Records that cannot be shown as stored (written before the api refused them, or corrupted)
never make a status read, a DLQ listing or consume-once fail: each shows a placeholder."""

from __future__ import annotations

import time

import httpx
from redis.asyncio import Redis

from taskforge.broker import Broker
from taskforge.ids import new_task_id
from taskforge.keys import QUEUES_REGISTRY, QueueKeys
from taskforge.models import UNREADABLE, TaskSpec
from tests.integration.conftest import enqueue
from tests.integration.test_api import api, assert_problem  # noqa: F401 - the fixture

DEEP = "[" * 300 + "1" + "]" * 300


async def write_dead_record(redis: Redis, queue: str, **fields: str) -> str:
    """A dead task written straight into Redis, as an older version could have stored it."""
    keys = QueueKeys(queue)
    task_id = new_task_id(queue)
    now_ms = int(time.time() * 1000)
    record = {
        "id": task_id, "type": "echo", "state": "dead", "payload": "{}", "attempts": "1",
        "created_ms": str(now_ms), "finished_ms": str(now_ms), "reason": "retries_exhausted",
        **fields,
    }  # fmt: skip
    await redis.hset(keys.task(task_id), mapping=record)
    await redis.zadd(keys.dead, {task_id: now_ms})
    await redis.sadd(QUEUES_REGISTRY, queue)
    return task_id


async def test_bad_records_show_placeholders_and_the_listing_works(
    api: httpx.AsyncClient,  # noqa: F811 - the fixture
    redis_client: Redis,
    queue_name: str,
) -> None:
    # A healthy dead task first, through the api.
    body = {"type": "no-such-handler", "queue": queue_name, "payload": {"ok": 1}}
    good = (await api.post("/v1/tasks", json=body)).json()["id"]
    await api.post("/consume-once", params={"queue": queue_name})
    bad = {
        "deep": await write_dead_record(redis_client, queue_name, payload=DEEP),
        "surrogate": await write_dead_record(redis_client, queue_name, payload='"\\ud800"'),
        "nan": await write_dead_record(redis_client, queue_name, result='{"x": NaN}'),
        "corrupt": await write_dead_record(
            redis_client, queue_name, attempts="many", backoff="{", created_ms="soon"
        ),
        "bad-event": await write_dead_record(redis_client, queue_name),
    }
    await redis_client.rpush(QueueKeys(queue_name).events(bad["bad-event"]), "not json")

    for route in ("/v1/dlq", "/dlq"):
        for params in ({}, {"queue": queue_name}):
            listing = await api.get(route, params={**params, "limit": 500})
            assert listing.status_code == 200, listing.text
            items = {t["id"]: t for t in listing.json()["items"]}
            assert items[good]["payload"] == {"ok": 1} and items[good]["unreadable"] is None
            assert set(bad.values()) <= set(items)
    for route in ("/v1/tasks/{}", "/tasks/{}"):
        records = {k: (await api.get(route.format(v))) for k, v in bad.items()}
        assert {r.status_code for r in records.values()} == {200}
        shown = {k: r.json() for k, r in records.items()}
        assert shown["deep"]["payload"] == UNREADABLE
        assert "deep" in shown["deep"]["unreadable"]["payload"]
        assert shown["surrogate"]["payload"] == UNREADABLE
        assert "Unicode" in shown["surrogate"]["unreadable"]["payload"]
        assert shown["nan"]["result"] == UNREADABLE and shown["nan"]["payload"] == {}
        assert set(shown["corrupt"]["unreadable"]) == {"attempts", "backoff", "created_ms"}
        assert shown["corrupt"]["attempts"] == 0 and shown["corrupt"]["state"] == "dead"
        assert set(shown["bad-event"]["unreadable"]) == {"events.0"}
    # Operator actions still work on them.
    assert (await api.post(f"/v1/dlq/{bad['deep']}/requeue")).json() == {"count": 1}


async def test_consume_once_of_an_unshowable_payload_answers(
    api: httpx.AsyncClient,  # noqa: F811
    broker: Broker,
    queue_name: str,
) -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    # Enqueued below the api, as an older version accepted it.
    [result] = await enqueue(broker, TaskSpec(type="echo", queue=queue_name, payload=deep))
    consumed = await api.post("/consume-once", params={"queue": queue_name})
    assert consumed.status_code == 200, consumed.text
    task = consumed.json()["task"]
    assert consumed.json()["outcome"] == "succeeded" and task["id"] == result.task_id
    assert task["payload"] == UNREADABLE
    # The echo result was refused when stored, so it reads back as a note, not a 500.
    assert "unserialisable_result" in task["result"]
    status = await api.get(f"/v1/tasks/{result.task_id}")
    assert status.status_code == 200 and status.json()["state"] == "succeeded"


async def test_unknown_task_is_still_404(api: httpx.AsyncClient, queue_name: str) -> None:  # noqa: F811
    assert_problem(await api.get(f"/v1/tasks/{queue_name}.{'0' * 32}"), 404, "task-not-found")


async def test_bytes_that_are_not_utf8_show_a_placeholder(
    api: httpx.AsyncClient,  # noqa: F811 - the fixture
    redis_client: Redis,
    queue_name: str,
) -> None:
    task_id = await write_dead_record(redis_client, queue_name)
    await redis_client.hset(QueueKeys(queue_name).task(task_id), "payload", b'"\xff\xfe"')
    status = await api.get(f"/v1/tasks/{task_id}")
    assert status.status_code == 200, status.text
    # Shown escaped (or as the placeholder), never as a failed read.
    assert status.json()["payload"] in (UNREADABLE, '"\\xff\\xfe"')
    listing = await api.get("/v1/dlq", params={"queue": queue_name})
    assert listing.status_code == 200 and listing.json()["total"] == 1
