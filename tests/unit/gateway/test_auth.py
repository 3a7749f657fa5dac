"""Authentication and scopes: who may call what, and how failures are answered and throttled."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from taskforge.apikeys import ApiKeyStore, Scope, generate_secret
from taskforge.broker import Broker
from taskforge.keys import authfail_key
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.unit.gateway.support import (
    MakeGateway,
    MakeKey,
    assert_problem,
    bearer,
    unique_client_address,
)

#: One request per route class: (method, path, json body or None).
WRITE_ROUTES = [
    ("POST", "/v1/tasks", {"type": "echo"}),
    ("POST", "/v1/tasks/batch", {"tasks": []}),
    ("DELETE", "/v1/tasks/q.1", None),
    ("POST", "/enqueue", {"type": "echo"}),
]
READ_ROUTES = [
    ("GET", "/v1/tasks/q.1", None),
    ("GET", "/tasks/q.1", None),
    ("GET", "/v1/queues", None),
    ("GET", "/v1/queues/q", None),
    ("GET", "/metrics", None),
]
ADMIN_ROUTES = [
    ("GET", "/v1/dlq", None),
    ("POST", "/v1/dlq/q.1/requeue", None),
    ("POST", "/v1/dlq/requeue", {"queue": "q"}),
    ("DELETE", "/v1/dlq", None),
    ("GET", "/dlq", None),
    ("DELETE", "/dlq", None),
    ("POST", "/consume-once", None),
    ("GET", "/v1/keys", None),
]
ROUTES_BY_SCOPE: dict[Scope, list[tuple[str, str, dict[str, object] | None]]] = {
    "tasks:write": WRITE_ROUTES,
    "tasks:read": READ_ROUTES,
    "admin": ADMIN_ROUTES,
}


@pytest.mark.parametrize(
    "scopes",
    [("tasks:write",), ("tasks:read",), ("admin",), ("tasks:write", "tasks:read")],
    ids=lambda s: "+".join(s),
)
async def test_each_scope_against_each_route_class(
    make_gateway: MakeGateway, make_key: MakeKey, scopes: tuple[Scope, ...]
) -> None:
    secret, _ = await make_key(*scopes)
    async with make_gateway() as gateway:
        for scope, routes in ROUTES_BY_SCOPE.items():
            allowed = "admin" in scopes or scope in scopes
            for method, path, body in routes:
                response = await gateway.request(method, path, json=body, headers=bearer(secret))
                if allowed:
                    assert response.status_code == 200, (method, path, response.text)
                else:
                    problem = assert_problem(response, 403, "insufficient-scope")
                    assert scope in problem["detail"]
                    assert response.headers["www-authenticate"].startswith("Bearer")
                    assert "ratelimit-remaining" in response.headers


async def test_no_key_is_401_with_a_bearer_challenge(make_gateway: MakeGateway) -> None:
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "ratelimit-limit" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer " + generate_secret()},
        {"X-API-Key": generate_secret()},
        {"X-API-Key": "short"},
        {"X-API-Key": "x" * 300},
    ],
    ids=["bearer", "x-api-key", "too-short", "too-long"],
)
async def test_invalid_key_is_401(make_gateway: MakeGateway, headers: dict[str, str]) -> None:
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues", headers=headers)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_bearer_and_x_api_key_both_work(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    secret, _ = await make_key("tasks:read")
    async with make_gateway() as gateway:
        for headers in (
            {"Authorization": f"Bearer {secret}"},
            {"Authorization": f"bearer {secret}"},
            {"X-API-Key": secret},
            {"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": secret},
        ):
            assert (await gateway.get("/v1/queues", headers=headers)).status_code == 200, headers


async def test_other_authorization_schemes_are_no_key(make_gateway: MakeGateway) -> None:
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues", headers={"Authorization": "Basic dXNlcg=="})
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_revoked_key_is_401(
    make_gateway: MakeGateway, make_key: MakeKey, store: ApiKeyStore
) -> None:
    secret, key = await make_key("tasks:read")
    await store.revoke(key.id)
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues", headers=bearer(secret))
    assert_problem(response, 401, "unauthorized")
    assert "revoked" in response.json()["detail"]


async def test_revocation_elsewhere_refuses_the_next_request_of_a_cached_key(
    make_gateway: MakeGateway, make_key: MakeKey, store: ApiKeyStore
) -> None:
    secret, key = await make_key("tasks:read")
    address = unique_client_address()
    # A TTL no test run outlasts: the key stays cached, only its revoked flag is read.
    async with make_gateway(key_cache_ttl_s=3600, client_address=address) as gateway:
        assert (await gateway.get("/v1/queues", headers=bearer(secret))).status_code == 200
        assert (await gateway.get("/v1/queues", headers=bearer(secret))).status_code == 200
        await store.revoke(key.id)
        response = await gateway.get("/v1/queues", headers=bearer(secret))
        assert_problem(response, 401, "unauthorized")
        assert "revoked" in response.json()["detail"]
        # Refused again (now without the cache), and counted as failed attempts.
        assert_problem(await gateway.get("/v1/queues", headers=bearer(secret)), 401, "unauthorized")
        assert int(await store.redis.get(authfail_key(address)) or 0) == 2


async def test_revocation_elsewhere_takes_effect_once_the_cache_expires(
    make_gateway: MakeGateway, make_key: MakeKey, store: ApiKeyStore
) -> None:
    secret, key = await make_key("tasks:read")
    async with make_gateway(key_cache_ttl_s=0.2) as gateway:
        assert (await gateway.get("/v1/queues", headers=bearer(secret))).status_code == 200
        await store.revoke(key.id)
        async with asyncio.timeout(10):  # generous: the cache lives 0.2 s
            while (
                response := await gateway.get("/v1/queues", headers=bearer(secret))
            ).status_code == 200:
                await asyncio.sleep(0.05)
    assert_problem(response, 401, "unauthorized")


async def test_admin_route_revocation_takes_effect_at_once(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    admin, _ = await make_key("admin")
    secret, key = await make_key("tasks:read")
    async with make_gateway() as gateway:
        assert (await gateway.get("/v1/queues", headers=bearer(secret))).status_code == 200
        assert (
            await gateway.delete(f"/v1/keys/{key.id}", headers=bearer(admin))
        ).status_code == 204
        assert_problem(await gateway.get("/v1/queues", headers=bearer(secret)), 401, "unauthorized")


async def test_last_used_is_recorded(
    make_gateway: MakeGateway, make_key: MakeKey, store: ApiKeyStore
) -> None:
    secret, key = await make_key("tasks:read")
    assert key.last_used_ms is None
    async with make_gateway() as gateway:
        await gateway.get("/v1/queues", headers=bearer(secret))
    stored = await store.get(key.id)
    assert stored is not None and stored.last_used_ms is not None
    assert stored.last_used_ms >= key.created_ms


async def test_failed_authentications_throttle_the_address(
    make_gateway: MakeGateway, make_key: MakeKey, redis_client: Redis
) -> None:
    secret, _ = await make_key("tasks:read")
    address = unique_client_address()
    async with make_gateway(
        client_address=address, auth_failures_per_window=3, auth_failure_window_s=30
    ) as gateway:
        # A request without any key guesses nothing and is not counted.
        assert_problem(await gateway.get("/v1/queues"), 401, "unauthorized")
        for _ in range(3):
            bad = {"X-API-Key": generate_secret()}
            assert_problem(await gateway.get("/v1/queues", headers=bad), 401, "unauthorized")
        # Over the limit: refused before the key is even looked at, valid or not.
        throttled = await gateway.get("/v1/queues", headers=bearer(secret))
        assert_problem(throttled, 429, "auth-throttled")
        assert 1 <= int(throttled.headers["retry-after"]) <= 30
    assert int(await redis_client.get(authfail_key(address))) == 3
    assert 0 < await redis_client.ttl(authfail_key(address)) <= 30
    async with make_gateway(auth_failures_per_window=3) as other_address:
        assert (await other_address.get("/v1/queues", headers=bearer(secret))).status_code == 200


async def test_a_cached_key_is_throttled_with_its_address(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    secret, _ = await make_key("tasks:read")
    async with make_gateway(auth_failures_per_window=2, key_cache_ttl_s=3600) as gateway:
        assert (await gateway.get("/v1/queues", headers=bearer(secret))).status_code == 200
        for _ in range(2):
            bad = {"X-API-Key": generate_secret()}
            assert_problem(await gateway.get("/v1/queues", headers=bad), 401, "unauthorized")
        throttled = await gateway.get("/v1/queues", headers=bearer(secret))
        assert_problem(throttled, 429, "auth-throttled")
        assert int(throttled.headers["retry-after"]) >= 1


async def test_a_cached_key_is_admitted_after_redis_forgets_its_scripts(
    make_gateway: MakeGateway, make_key: MakeKey, redis_client: Redis
) -> None:
    secret, _ = await make_key("tasks:read", rate_per_s=0.01, burst=5)
    async with make_gateway(key_cache_ttl_s=3600) as gateway:
        first = await gateway.get("/v1/queues", headers=bearer(secret))
        await redis_client.script_flush()  # what a Redis restart without persistence does
        again = [await gateway.get("/v1/queues", headers=bearer(secret)) for _ in range(2)]
    assert [r.status_code for r in (first, *again)] == [200, 200, 200]
    # Each request was counted once: the reloaded script ran once per request.
    assert [r.headers["ratelimit-remaining"] for r in (first, *again)] == ["4", "3", "2"]


async def test_throttling_behind_trusted_proxies_uses_the_forwarded_address(
    make_gateway: MakeGateway, redis_client: Redis
) -> None:
    client = unique_client_address()
    spoofed = unique_client_address()
    headers = {"X-API-Key": generate_secret(), "X-Forwarded-For": f"{spoofed}, {client}"}
    async with make_gateway(trusted_proxy_hops=1) as gateway:
        assert_problem(await gateway.get("/v1/queues", headers=headers), 401, "unauthorized")
    assert await redis_client.get(authfail_key(client)) == b"1"
    assert await redis_client.get(authfail_key(spoofed)) is None


async def test_redis_down_is_503_with_retry_after(make_gateway: MakeGateway) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with make_gateway(redis_url=closed) as gateway:
        response = await gateway.get("/v1/queues", headers={"X-API-Key": generate_secret()})
        assert_problem(response, 503, "redis-unavailable")
        assert response.headers["retry-after"] == "1"
        ready = await gateway.get("/readyz")
        assert_problem(ready, 503, "redis-unavailable")
        assert (await gateway.get("/healthz")).json() == {"status": "ok"}


async def test_a_cached_key_is_503_while_redis_is_down_and_admitted_after(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    with RedisServer(dir=tmp_path) as server:
        broker = Broker.from_url(server.url)
        new = await ApiKeyStore(broker.redis).create("outage", frozenset({"tasks:read"}))
        await broker.close()
        assert new is not None
        async with make_gateway(redis_url=server.url, key_cache_ttl_s=3600) as gateway:
            assert (await gateway.get("/v1/queues", headers=bearer(new.secret))).status_code == 200
            server.stop()
            down = await gateway.get("/v1/queues", headers=bearer(new.secret))
            assert_problem(down, 503, "redis-unavailable")
            assert down.headers["retry-after"] == "1"
            server.start()  # without persistence: the key must be stored again
            broker = Broker.from_url(server.url)
            scopes = frozenset({"tasks:read"})
            await ApiKeyStore(broker.redis).create("outage", scopes, secret=new.secret)
            await broker.close()
            # redis-py's pooled connections fail once each after the restart; the
            # multiplexed one reconnects on its next call.
            async with asyncio.timeout(10):
                while (
                    back := await gateway.get("/v1/queues", headers=bearer(new.secret))
                ).status_code == 503:
                    await asyncio.sleep(0.05)
            assert back.status_code == 200, back.text


async def test_probes_need_no_key(make_gateway: MakeGateway) -> None:
    async with make_gateway() as gateway:
        assert (await gateway.get("/healthz")).status_code == 200
        assert (await gateway.get("/readyz")).json() == {"status": "ok"}


async def test_unknown_routes_are_404_before_auth(make_gateway: MakeGateway) -> None:
    async with make_gateway() as gateway:
        assert_problem(await gateway.get(f"/v2/{uuid.uuid4().hex}"), 404, "not-found")
        assert_problem(await gateway.get("/v1/tasks/a/b"), 404, "not-found")
        wrong_method = await gateway.put("/v1/tasks", json={})
    assert_problem(wrong_method, 405, "method-not-allowed")
    assert wrong_method.headers["allow"] == "POST"


async def test_a_cached_key_is_503_while_redis_refuses_writes(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    """An error reply meaning "not now" (here OOM; LOADING after a restart is the same) in the
    admission round trip is a 503 with Retry-After, never a 500."""
    with RedisServer(dir=tmp_path) as server:
        broker = Broker.from_url(server.url)
        key = await ApiKeyStore(broker.redis).create("oom", frozenset({"tasks:read"}))
        assert key is not None
        async with make_gateway(redis_url=server.url, key_cache_ttl_s=3600) as gateway:
            assert (await gateway.get("/v1/queues", headers=bearer(key.secret))).status_code == 200
            await broker.redis.config_set("maxmemory", 1)
            try:
                refused = await gateway.get("/v1/queues", headers=bearer(key.secret))
            finally:
                await broker.redis.config_set("maxmemory", 0)
                await broker.close()
            assert_problem(refused, 503, "redis-unavailable")
            assert refused.headers["retry-after"] == "1"
