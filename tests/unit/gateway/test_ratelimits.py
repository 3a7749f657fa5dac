"""Per-key rate limits as clients see them: RateLimit-* headers, 429, recovery."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from tests.unit.gateway.support import MakeGateway, MakeKey, assert_problem, bearer
from tests.unit.gateway.upstream import Upstream


def _limited_total() -> float:
    return REGISTRY.get_sample_value("taskforge_gateway_rate_limited_total") or 0.0


async def test_burst_then_429(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    # One request per 100 s: nothing refills while the test runs, however slow the machine.
    secret, _ = await make_key("tasks:read", rate_per_s=0.01, burst=3)
    before = _limited_total()
    async with make_gateway() as gateway:
        admitted = [await gateway.get("/v1/queues", headers=bearer(secret)) for _ in range(3)]
        refused = await gateway.get("/v1/queues", headers=bearer(secret))

    assert [r.status_code for r in admitted] == [200, 200, 200]
    assert [r.headers["ratelimit-remaining"] for r in admitted] == ["2", "1", "0"]
    assert {r.headers["ratelimit-limit"] for r in admitted} == {"3"}
    # The bucket is full again after the spent tokens refill: 100 s each.
    assert [int(r.headers["ratelimit-reset"]) for r in admitted] == [100, 200, 300]
    assert "retry-after" not in admitted[0].headers

    assert_problem(refused, 429, "rate-limited")
    assert refused.headers["retry-after"] == "100"
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert _limited_total() == before + 1


async def test_a_refused_key_recovers(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    secret, _ = await make_key("tasks:read", rate_per_s=5, burst=1)
    async with make_gateway() as gateway, asyncio.timeout(10):  # generous: 0.2 s per token
        while (await gateway.get("/v1/queues", headers=bearer(secret))).status_code != 429:
            pass
        while (
            recovered := await gateway.get("/v1/queues", headers=bearer(secret))
        ).status_code == 429:
            await asyncio.sleep(0.05)
    assert recovered.status_code == 200
    assert recovered.headers["ratelimit-remaining"] == "0"


async def test_keys_without_limits_use_the_gateway_defaults(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    secret, key = await make_key("tasks:read")
    assert key.rate_per_s is None and key.burst is None
    async with make_gateway(default_rate_per_s=0.01, default_burst=2) as gateway:
        first = await gateway.get("/v1/queues", headers=bearer(secret))
        second = await gateway.get("/v1/queues", headers=bearer(secret))
        third = await gateway.get("/v1/queues", headers=bearer(secret))
    assert first.headers["ratelimit-limit"] == "2"
    assert (first.status_code, second.status_code) == (200, 200)
    assert_problem(third, 429, "rate-limited")


async def test_keys_are_limited_independently(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    busy, _ = await make_key("tasks:read", rate_per_s=0.01, burst=1)
    idle, _ = await make_key("tasks:read", rate_per_s=0.01, burst=1)
    async with make_gateway() as gateway:
        assert (await gateway.get("/v1/queues", headers=bearer(busy))).status_code == 200
        assert_problem(await gateway.get("/v1/queues", headers=bearer(busy)), 429, "rate-limited")
        assert (await gateway.get("/v1/queues", headers=bearer(idle))).status_code == 200


async def test_refused_requests_never_reach_the_api(
    make_gateway: MakeGateway, make_key: MakeKey, upstream: Upstream
) -> None:
    secret, _ = await make_key("tasks:read", rate_per_s=0.01, burst=1)
    async with make_gateway() as gateway:
        await gateway.get("/v1/queues?marker=first", headers=bearer(secret))
        await gateway.get("/v1/queues?marker=second", headers=bearer(secret))
    queries = [q for _, _, q in upstream.seen]
    assert "marker=first" in queries
    assert "marker=second" not in queries
