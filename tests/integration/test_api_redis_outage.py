"""The api when Redis is gone or full: 503 with Retry-After, and readiness that says so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from redis.exceptions import OutOfMemoryError

from tests.integration.test_api import api_client, assert_problem
from tests.integration.test_gateway import INTERNAL_TOKEN, start_service, stop_service
from tests.support.redis_server import RedisServer


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it may stop."""
    with RedisServer(dir=tmp_path / "redis") as server:
        yield server


def wait_for_status(url: str, status: int, timeout_s: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(url, timeout=5)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_readyz_follows_redis_through_an_outage(private_redis: RedisServer, tmp_path: Path) -> None:
    api = start_service(
        "taskforge_api.main",
        tmp_path / "api.log",
        redis_url=private_redis.url,
        internal_token=INTERNAL_TOKEN,
    )
    try:
        probe = f"{api.metrics_url}/readyz"
        assert wait_for_status(probe, 200).status_code == 200, api.log()
        private_redis.stop()
        down = wait_for_status(probe, 503)
        assert down.status_code == 503 and "Redis" in down.text, api.log()
        headers = {"X-TaskForge-Internal-Token": INTERNAL_TOKEN}
        enqueue = httpx.post(f"{api.url}/v1/tasks", json={"type": "echo"}, headers=headers)
        assert_problem(enqueue, 503, "redis-unavailable")
        assert enqueue.headers["retry-after"] == "1"
        private_redis.start()
        assert wait_for_status(probe, 200).status_code == 200, api.log()
        again = httpx.post(f"{api.url}/v1/tasks", json={"type": "echo"}, headers=headers)
        assert again.status_code == 201, again.text
    finally:
        stop_service(api)


async def test_every_route_answers_503_while_redis_is_down(private_redis: RedisServer) -> None:
    async with api_client(private_redis.url, redis_socket_timeout_s=1) as api:
        created = (await api.post("/v1/tasks", json={"type": "echo", "delay_s": 60})).json()
        private_redis.stop()
        for method, path, body in (
            ("POST", "/v1/tasks", {"type": "echo"}),
            ("POST", "/v1/tasks/batch", {"tasks": [{"type": "echo"}]}),
            ("GET", f"/v1/tasks/{created['id']}", None),
            ("DELETE", f"/v1/tasks/{created['id']}", None),
            ("GET", "/v1/dlq", None),
            ("POST", "/v1/dlq/requeue?all=true", None),
            ("POST", "/consume-once", None),
            ("GET", "/readyz", None),
        ):
            response = await api.request(method, path, json=body)
            assert_problem(response, 503, "redis-unavailable")
            assert response.headers["retry-after"] == "1", (method, path)


async def test_enqueue_is_503_while_redis_is_out_of_memory(tmp_path: Path) -> None:
    with RedisServer(
        dir=tmp_path / "redis", extra_args=["--maxmemory-policy", "noeviction"]
    ) as server:
        async with api_client(server.url, max_body_bytes=65_536) as api:
            queued = await api.post("/v1/tasks", json={"type": "echo", "delay_s": 60})
            assert queued.status_code == 201
            admin = Redis.from_url(server.url)
            admin.set("ballast", b"x" * 4_000_000)
            # A limit below what is used: every write is refused until memory frees up.
            admin.config_set("maxmemory", "2mb")
            with pytest.raises(OutOfMemoryError):
                admin.set("probe", 1)
            refused = await api.post("/v1/tasks", json={"type": "echo"})
            assert_problem(refused, 503, "redis-unavailable")
            assert refused.headers["retry-after"] == "1"
            # Reads still work, and the refused task was not half-written.
            stats = (await api.get("/v1/queues/default")).json()
            assert (stats["queued"], stats["scheduled"]) == (0, 1)
            admin.config_set("maxmemory", "0")
            admin.close()
            async with asyncio.timeout(10):
                while (await api.post("/v1/tasks", json={"type": "echo"})).status_code != 201:
                    await asyncio.sleep(0.1)
