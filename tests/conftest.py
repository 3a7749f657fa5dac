"""Shared fixtures: a private Redis server for the whole run, clients and queue names.

Fixtures:
    redis_server (session): a running :class:`tests.support.redis_server.RedisServer` on a
        free port of 127.0.0.1, no persistence, no password. Has ``.port``, ``.url`` and
        ``.proc``. Do not stop or kill it; start a ``RedisServer`` of your own for that.
    redis_url (session): ``redis_server.url``, e.g. ``redis://127.0.0.1:40123/0``.
    redis_client (function, async): ``redis.asyncio.Redis`` on ``redis_url`` with
        ``decode_responses=False``; closed after the test.
    queue_name (function): a fresh queue name, ``"q-" + 10 hex digits``.
    jaeger (module): a real Jaeger v2 (:class:`tests.support.jaeger.Jaeger`, built into bin/ on
        first use) taking OTLP/HTTP on ``.otlp_endpoint``; stopped after the module.

The server is shared and never flushed: isolate tests through unique queue names.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from tests.support.jaeger import Jaeger
from tests.support.redis_server import RedisServer, RedisServerError, require_redis_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole test session (fails, never skips, if missing)."""
    try:
        binary = require_redis_server()
    except RedisServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    server = RedisServer(dir=tmp_path_factory.mktemp("redis-session"), binary=binary)
    try:
        server.start()
    except RedisServerError as exc:
        pytest.fail(f"could not start the test redis-server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session Redis server (database 0)."""
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio Redis client (bytes responses) on the session server, closed afterwards."""
    client = Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses."""
    return "q-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    with Jaeger(tmp_path_factory.mktemp("jaeger")).start() as running:
        yield running
