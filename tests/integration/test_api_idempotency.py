"""Idempotency keys: scoped per API key, compared on the whole body, expiring, race-free."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from taskforge.keys import QueueKeys
from tests.integration.test_api import api, api_client, assert_problem  # noqa: F401 - fixture

ALICE = {"X-TaskForge-Key-Id": "a1a1a1a1a1a1"}
BOB = {"X-TaskForge-Key-Id": "b2b2b2b2b2b2"}


async def test_clients_neither_collide_nor_learn_each_others_ids(
    api: httpx.AsyncClient,  # noqa: F811 - the fixture
    queue_name: str,
) -> None:
    body = {"type": "echo", "queue": queue_name, "payload": {"who": "alice"}}
    alice = await api.post("/v1/tasks", json=body, headers={**ALICE, "Idempotency-Key": "k1"})
    other = {**body, "payload": {"who": "bob"}}
    bob = await api.post("/v1/tasks", json=other, headers={**BOB, "Idempotency-Key": "k1"})
    assert (alice.status_code, bob.status_code) == (201, 201), bob.text
    assert alice.json()["id"] != bob.json()["id"]
    # A client without an identity (the internal credential alone) has its own scope too.
    internal = await api.post("/v1/tasks", json=body, headers={"Idempotency-Key": "k1"})
    assert internal.status_code == 201 and internal.json()["id"] != alice.json()["id"]
    # Each client's replay finds its own task; its conflict names only its own task.
    replay = await api.post("/v1/tasks", json=other, headers={**BOB, "Idempotency-Key": "k1"})
    assert (replay.status_code, replay.json()["id"]) == (200, bob.json()["id"])
    conflict = await api.post("/v1/tasks", json=other, headers={**ALICE, "Idempotency-Key": "k1"})
    detail = assert_problem(conflict, 409, "idempotency-conflict")["detail"]
    assert alice.json()["id"] in detail and bob.json()["id"] not in detail
    assert "'k1'" in detail and ALICE["X-TaskForge-Key-Id"] not in detail
    # Records show the key as the client sent it.
    record = (await api.get(f"/v1/tasks/{bob.json()['id']}")).json()
    assert record["idempotency_key"] == "k1"
    # The legacy route and batches share the scoping.
    legacy = await api.post("/enqueue", json=other, headers={**BOB, "Idempotency-Key": "k1"})
    assert legacy.json()["task_id"] == bob.json()["id"]
    batch = await api.post(
        "/v1/tasks/batch", json={"tasks": [{**other, "idempotency_key": "k1"}]}, headers=BOB
    )
    assert batch.json()["tasks"][0]["id"] == bob.json()["id"]


async def test_another_type_or_option_under_one_key_is_a_conflict(
    api: httpx.AsyncClient,  # noqa: F811
    queue_name: str,
) -> None:
    body = {"type": "echo", "queue": queue_name, "payload": 1}
    headers = {**ALICE, "Idempotency-Key": "same"}
    first = await api.post("/v1/tasks", json=body, headers=headers)
    assert first.status_code == 201
    for change in (
        {"type": "sleep"},
        {"max_retries": 3},
        {"delay_s": 5},
        {"timeout_s": 9},
        {"backoff": {"kind": "fixed"}},
        {"queue": f"{queue_name}-other"},
    ):
        response = await api.post("/v1/tasks", json={**body, **change}, headers=headers)
        if "queue" in change:
            # Keys are per queue as well: another queue is another task.
            assert response.status_code == 201, response.text
            continue
        assert_problem(response, 409, "idempotency-conflict")
    stats = (await api.get(f"/v1/queues/{queue_name}")).json()
    assert stats["queued"] + stats["scheduled"] == 1


async def test_a_key_expires_after_its_ttl(
    redis_url: str, redis_client: Redis, queue_name: str
) -> None:
    body = {"type": "echo", "queue": queue_name}
    headers = {**ALICE, "Idempotency-Key": "short-lived"}
    async with api_client(redis_url, idempotency_ttl_s=1) as client:
        first = (await client.post("/v1/tasks", json=body, headers=headers)).json()["id"]
        again = await client.post("/v1/tasks", json=body, headers=headers)
        assert (again.status_code, again.json()["id"]) == (200, first)
        stored = QueueKeys(queue_name).idempotency("a1a1a1a1a1a1:short-lived")
        assert 0 < await redis_client.pttl(stored) <= 1000
        async with asyncio.timeout(10):
            while await redis_client.exists(stored):
                await asyncio.sleep(0.05)
        later = await client.post("/v1/tasks", json=body, headers=headers)
    assert later.status_code == 201 and later.json()["id"] != first


async def test_concurrent_posts_with_one_key_make_one_task(
    api: httpx.AsyncClient,  # noqa: F811
    queue_name: str,
) -> None:
    body = {"type": "echo", "queue": queue_name, "payload": {"n": 1}}
    headers = {**ALICE, "Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(api.post("/v1/tasks", json=body, headers=headers) for _ in range(20))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await api.get(f"/v1/queues/{queue_name}")).json()["queued"] == 1
