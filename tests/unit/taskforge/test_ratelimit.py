"""The GCRA rate-limit script against real Redis, and its header contract."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import pytest

from taskforge.broker import Broker
from taskforge.keys import ratelimit_key
from taskforge.ratelimit import RateDecision, check_rate
from taskforge.scripts import SCRIPT_NAMES, declared_key_count, script_source


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Broker]:
    b = Broker.from_url(redis_url)
    try:
        yield b
    finally:
        await b.close()


def _key_id() -> str:
    return "test-" + uuid.uuid4().hex[:12]


async def test_burst_is_admitted_at_once_then_refused(broker: Broker) -> None:
    key_id = _key_id()
    decisions = [await check_rate(broker.scripts, key_id, rate_per_s=1, burst=5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.retry_after_s == 1
    assert 4 <= refused.reset_s <= 5
    assert decisions[0].retry_after_s == 0


async def rewind(broker: Broker, key_id: str, seconds: float) -> None:
    """Make ``seconds`` pass for the bucket: move its stored arrival time back.

    Deterministic where sleeping is not: with a 1 s interval, the real time that passes
    between two calls would have to exceed a second to change a decision.
    """
    key = ratelimit_key(key_id)
    tat_us = int(await broker.redis.get(key))
    await broker.redis.set(key, str(tat_us - int(seconds * 1_000_000)), keepttl=True)


async def test_steady_rate_after_the_burst(broker: Broker) -> None:
    key_id = _key_id()

    async def check() -> RateDecision:
        return await check_rate(broker.scripts, key_id, rate_per_s=1.0, burst=2)

    assert [(d.allowed, d.remaining) for d in [await check(), await check()]] == [
        (True, 1),
        (True, 0),
    ]
    refused = await check()
    assert not refused.allowed and refused.retry_after_s == 1
    # One interval later: exactly one more request, not the burst again.
    await rewind(broker, key_id, 1.0)
    assert [(await check()).allowed for _ in range(2)] == [True, False]
    # Half an interval is not enough.
    await rewind(broker, key_id, 0.5)
    assert not (await check()).allowed
    # A long pause refills the bucket to the burst, never beyond it.
    await rewind(broker, key_id, 3600)
    assert [(await check()).allowed for _ in range(3)] == [True, True, False]


async def test_bucket_refills_fully_and_the_key_expires(broker: Broker) -> None:
    key_id = _key_id()
    for _ in range(3):
        await check_rate(broker.scripts, key_id, rate_per_s=20, burst=3)
    ttl_ms = await broker.redis.pttl(ratelimit_key(key_id))
    assert 0 < ttl_ms <= 150
    await asyncio.sleep(0.2)
    assert await broker.redis.exists(ratelimit_key(key_id)) == 0
    decision = await check_rate(broker.scripts, key_id, rate_per_s=20, burst=3)
    assert decision.allowed and decision.remaining == 2


async def test_keys_are_independent(broker: Broker) -> None:
    busy, idle = _key_id(), _key_id()
    for _ in range(3):
        await check_rate(broker.scripts, busy, rate_per_s=0.5, burst=3)
    assert not (await check_rate(broker.scripts, busy, rate_per_s=0.5, burst=3)).allowed
    fresh = await check_rate(broker.scripts, idle, rate_per_s=0.5, burst=3)
    assert fresh.allowed and fresh.remaining == 2


async def test_cost_counts_several_requests(broker: Broker) -> None:
    key_id = _key_id()
    first = await check_rate(broker.scripts, key_id, rate_per_s=1, burst=10, cost=7)
    second = await check_rate(broker.scripts, key_id, rate_per_s=1, burst=10, cost=7)
    assert (first.allowed, first.remaining) == (True, 3)
    assert not second.allowed and second.retry_after_s == 4


async def test_slow_rates_keep_precision(broker: Broker) -> None:
    key_id = _key_id()
    decision = await check_rate(broker.scripts, key_id, rate_per_s=1 / 3600, burst=1)
    refused = await check_rate(broker.scripts, key_id, rate_per_s=1 / 3600, burst=1)
    assert decision.allowed and decision.reset_s == 3600
    assert not refused.allowed and 3599 <= refused.retry_after_s <= 3600
    stored = await broker.redis.get(ratelimit_key(key_id))
    assert re.fullmatch(r"\d{16,}", stored), stored


@pytest.mark.parametrize(
    ("rate_per_s", "burst", "cost"),
    [(0, 1, 1), (-1, 1, 1), (float("inf"), 1, 1), (float("nan"), 1, 1), (1, 0, 1), (1, 2, 3)],
)
async def test_invalid_arguments(broker: Broker, rate_per_s: float, burst: int, cost: int) -> None:
    with pytest.raises(ValueError, match="invalid rate limit"):
        await check_rate(broker.scripts, _key_id(), rate_per_s=rate_per_s, burst=burst, cost=cost)


def test_headers() -> None:
    admitted = RateDecision(allowed=True, limit=5, remaining=4, reset_s=1, retry_after_s=0)
    refused = RateDecision(allowed=False, limit=5, remaining=0, reset_s=5, retry_after_s=1)
    assert admitted.headers() == {
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "4",
        "RateLimit-Reset": "1",
    }
    assert refused.headers()["Retry-After"] == "1"


def test_script_header_contract() -> None:
    assert "ratelimit" in SCRIPT_NAMES
    source = script_source("ratelimit")
    header, body = source.split("]]", 1)
    assert declared_key_count("ratelimit") == 1
    used_args = {int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)}
    documented = {int(n) for n in re.findall(r"^\s*ARGV\[(\d+)\]", header, re.MULTILINE)}
    assert used_args == documented == {1, 2, 3}
    assert "local rcall = redis.call" in body
    assert 'rcall("TIME")' in body
    assert "Returns:" in header
