"""The bootstrap key: created at start-up, idempotent, stored only as a hash."""

from __future__ import annotations

import asyncio
import logging
import secrets

import pytest
from redis.asyncio import Redis

from taskforge.apikeys import ApiKeyStore, hash_secret
from taskforge.errors import ConfigurationError
from taskforge.keys import APIKEYS_INDEX, apikey_record_key
from taskforge_gateway.app import create_app
from tests.support.redis_server import RedisServer
from tests.unit.gateway.support import MakeGateway, assert_problem, bearer, gateway_settings
from tests.unit.gateway.upstream import Upstream


def _bootstrap_secret() -> str:
    return "bootstrap-" + secrets.token_hex(16)


async def _values(redis: Redis, key: bytes) -> list[bytes]:
    """Every value stored under ``key``, whatever its type."""
    kind = (await redis.type(key)).decode()
    if kind == "string":
        return [await redis.get(key)]
    if kind == "hash":
        return [x for kv in (await redis.hgetall(key)).items() for x in kv]
    if kind == "list":
        return list(await redis.lrange(key, 0, -1))
    if kind in ("set", "zset"):
        members = await (redis.smembers(key) if kind == "set" else redis.zrange(key, 0, -1))
        return list(members)
    if kind == "stream":
        return [x for _, fields in await redis.xrange(key) for kv in fields.items() for x in kv]
    return []


async def test_bootstrap_key_is_admin_and_stored_only_as_a_hash(
    make_gateway: MakeGateway, store: ApiKeyStore, redis_client: Redis
) -> None:
    secret = _bootstrap_secret()
    async with make_gateway(bootstrap_api_key=secret) as gateway:
        assert (await gateway.get("/v1/keys", headers=bearer(secret))).status_code == 200
        assert (await gateway.get("/v1/queues", headers=bearer(secret))).status_code == 200

    key = await store.find(secret)
    assert key is not None
    assert (key.name, key.scopes, key.revoked) == ("bootstrap", frozenset({"admin"}), False)
    assert await redis_client.hget(APIKEYS_INDEX, key.id) == hash_secret(secret).encode()

    raw = secret.encode()
    async for name in redis_client.scan_iter(match="*", count=1000):
        assert raw not in name
        assert all(raw not in value for value in await _values(redis_client, name)), name


async def test_bootstrap_is_idempotent(make_gateway: MakeGateway, store: ApiKeyStore) -> None:
    secret = _bootstrap_secret()
    async with make_gateway(bootstrap_api_key=secret):
        first = await store.find(secret)
    async with make_gateway(bootstrap_api_key=secret):
        second = await store.find(secret)
    assert first is not None and second is not None
    assert first.id == second.id
    same_digest = [k for k in await store.list_keys() if k.digest == hash_secret(secret)]
    assert len(same_digest) == 1


async def test_revoked_bootstrap_key_stays_revoked(
    make_gateway: MakeGateway, store: ApiKeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    secret = _bootstrap_secret()
    async with make_gateway(bootstrap_api_key=secret):
        pass
    key = await store.find(secret)
    assert key is not None
    await store.revoke(key.id)
    caplog.set_level(logging.WARNING)
    async with make_gateway(bootstrap_api_key=secret) as gateway:
        response = await gateway.get("/v1/keys", headers=bearer(secret))
    assert_problem(response, 401, "unauthorized")
    assert f"bootstrap API key (id {key.id}) is revoked" in caplog.text
    assert secret not in caplog.text


async def test_bootstrap_waits_for_redis(make_gateway: MakeGateway) -> None:
    """A gateway started while Redis is down comes up; the key record appears later."""
    secret = _bootstrap_secret()
    record = apikey_record_key(hash_secret(secret))
    with RedisServer() as server:
        server.stop()
        async with make_gateway(bootstrap_api_key=secret, redis_url=server.url) as gateway:
            assert (await gateway.get("/readyz")).status_code == 503
            server.start()
            client = Redis.from_url(server.url)
            try:
                for _ in range(50):
                    if await client.exists(record):
                        break
                    await asyncio.sleep(0.1)
            finally:
                await client.aclose()
            response = await gateway.get("/v1/keys", headers=bearer(secret))
        assert response.status_code == 200


def test_short_bootstrap_keys_are_refused(redis_url: str, upstream: Upstream) -> None:
    settings = gateway_settings(
        redis_url=redis_url, api_url=upstream.url, bootstrap_api_key="x" * 23
    )
    with pytest.raises(ConfigurationError, match="at least 24 characters"):
        create_app(settings)
