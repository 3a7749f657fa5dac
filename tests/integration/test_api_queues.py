"""The api's side of bounded queues: 409 past the limit, 422 outside the pattern, paginated
listings and a bounded JSON ``/metrics``, against a private Redis (they count every queue).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.integration.test_api import api_client, assert_problem
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(dir=Path(tmp_path_factory.mktemp("api-queues"))) as server:
        yield server


@pytest.fixture
async def redis_url(private_redis: RedisServer) -> str:
    client = Redis.from_url(private_redis.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return private_redis.url


async def test_new_queue_past_the_limit_is_a_409_that_writes_nothing(redis_url: str) -> None:
    async with api_client(redis_url, max_queues=2) as api:
        for queue in ("a", "b"):
            response = await api.post("/v1/tasks", json={"type": "echo", "queue": queue})
            assert response.status_code == 201, response.text
        body = assert_problem(
            await api.post("/v1/tasks", json={"type": "echo", "queue": "c"}), 409, "queue-limit"
        )
        assert "2 queues exist, the limit is 2" in body["detail"]
        batch = {"tasks": [{"type": "echo", "queue": "a"}, {"type": "echo", "queue": "c"}]}
        assert_problem(await api.post("/v1/tasks/batch", json=batch), 409, "queue-limit")
        assert (await api.get("/v1/queues/a")).json()["queued"] == 1
        assert_problem(await api.get("/v1/queues/c"), 404, "queue-not-found")
        assert (await api.post("/v1/tasks", json={"type": "echo", "queue": "a"})).status_code == 201
        listing = (await api.get("/v1/queues")).json()
        assert (listing["total"], [q["queue"] for q in listing["queues"]]) == (2, ["a", "b"])


async def test_queue_outside_the_pattern_is_a_422(redis_url: str) -> None:
    async with api_client(redis_url, queue_pattern="tenant-[a-z]+") as api:
        ok = await api.post("/v1/tasks", json={"type": "echo", "queue": "tenant-acme"})
        assert ok.status_code == 201, ok.text
        body = assert_problem(
            await api.post("/v1/tasks", json={"type": "echo", "queue": "default"}),
            422,
            "queue-not-allowed",
        )
        assert "tenant-[a-z]+" in body["detail"]
        reserved = await api.post("/enqueue", json={"type": "echo", "queue": "_other"})
        assert_problem(reserved, 422, "queue-not-allowed")
        assert (await api.get("/v1/queues")).json()["total"] == 1


async def test_queue_listing_pages_in_name_order(redis_url: str) -> None:
    names = ["e", "c", "a", "d", "b"]
    async with api_client(redis_url) as api:
        batch = {"tasks": [{"type": "echo", "queue": n, "delay_s": 60} for n in names]}
        assert (await api.post("/v1/tasks/batch", json=batch)).status_code == 201
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/v1/queues", params=params)).json()
            assert page["total"] == 5
            seen += [(q["queue"], q["scheduled"]) for q in page["queues"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert (pages, seen) == (3, [(n, 1) for n in sorted(names)])
        assert_problem(await api.get("/v1/queues", params={"cursor": "no/such"}), 422)
        assert_problem(await api.get("/v1/queues", params={"limit": 0}), 422)
        past = (await api.get("/v1/queues", params={"cursor": "zzz"})).json()
        assert (past["queues"], past["next_cursor"]) == ([], None)


async def test_json_metrics_list_the_busiest_queues_and_total_them_all(redis_url: str) -> None:
    async with api_client(redis_url, max_batch_size=1000, max_body_bytes=1 << 20) as api:
        tasks = [{"type": "echo", "queue": f"q{i:03}"} for i in range(120)]
        tasks += [{"type": "echo", "queue": "deep"} for _ in range(5)]
        assert (await api.post("/v1/tasks/batch", json={"tasks": tasks})).status_code == 201
        metrics = (await api.get("/metrics")).json()
    queues = metrics["queues"]
    assert len(queues) == 101 and "_other" in queues
    assert queues["deep"]["queued"] == 5
    assert queues["_other"]["queued"] == 21
    assert sum(q["queued"] for q in queues.values()) == 125
    assert metrics["totals"]["queued_now"] == 125
    assert metrics["totals"]["enqueued"] == 125


async def test_json_metrics_follow_the_metrics_max_queues_setting(redis_url: str) -> None:
    async with api_client(redis_url, metrics_max_queues=3) as api:
        tasks = [{"type": "echo", "queue": f"m{i}"} for i in range(5)]
        assert (await api.post("/v1/tasks/batch", json={"tasks": tasks})).status_code == 201
        queues = (await api.get("/metrics")).json()["queues"]
    assert len(queues) == 4 and queues["_other"]["queued"] == 2
