"""Fixtures for gateway tests: a fake api, a key store, and gateways over ASGI.

Fixtures:
    upstream (session): a running :class:`tests.unit.gateway.upstream.Upstream`.
    store (function, async): an :class:`~taskforge.apikeys.ApiKeyStore` on the session Redis.
    make_key (function, async): ``await make_key(*scopes, rate_per_s=None, burst=None)`` stores
        a key named after the test and returns ``(secret, ApiKey)``.
    make_gateway (function): ``async with make_gateway(**settings) as client`` runs a gateway
        app (lifespan included) against the fake api and the session Redis, and yields an
        ``httpx.AsyncClient`` over ASGI from a client address no other test uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from taskforge.apikeys import ApiKey, ApiKeyStore, Scope
from taskforge.broker import Broker
from taskforge_gateway.app import create_app
from tests.unit.gateway.support import MakeGateway, MakeKey, gateway_settings, unique_client_address
from tests.unit.gateway.upstream import Upstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """The fake api, shared by every gateway test."""
    server = Upstream().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[ApiKeyStore]:
    """A key store on the session Redis."""
    broker = Broker.from_url(redis_url)
    try:
        yield ApiKeyStore(broker.redis)
    finally:
        await broker.close()


@pytest.fixture
def make_key(store: ApiKeyStore, request: pytest.FixtureRequest) -> MakeKey:
    """Store keys named after the test."""

    async def make(
        *scopes: Scope, rate_per_s: float | None = None, burst: int | None = None
    ) -> tuple[str, ApiKey]:
        new = await store.create(
            request.node.name[:60], frozenset(scopes), rate_per_s=rate_per_s, burst=burst
        )
        assert new is not None
        return new.secret, new.key

    return make


@pytest.fixture
def make_gateway(redis_url: str, upstream: Upstream) -> MakeGateway:
    """Gateways over ASGI, each from its own client address."""

    @asynccontextmanager
    async def make(
        *, client_address: str | None = None, key_cache_ttl_s: float = 5.0, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        overrides.setdefault("api_url", upstream.url)
        overrides.setdefault("redis_url", redis_url)
        settings = gateway_settings(**overrides)
        app = create_app(settings, key_cache_ttl_s=key_cache_ttl_s)
        address = client_address or unique_client_address()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield client

    return make
