"""Fixtures for tests that drive the broker and an in-process worker against real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from taskforge.broker import Broker
from taskforge.broker.enqueue import EnqueueResult, enqueue_many
from taskforge.models import TaskSpec


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Broker]:
    """A broker (string responses) on the session Redis server."""
    b = Broker.from_url(redis_url)
    try:
        yield b
    finally:
        await b.close()


async def enqueue(broker: Broker, *specs: TaskSpec) -> list[EnqueueResult]:
    """Enqueue with test-friendly defaults."""
    return await enqueue_many(
        broker,
        list(specs),
        now_ms=int(time.time() * 1000),
        idempotency_ttl_s=60,
        max_payload_bytes=65_536,
    )
