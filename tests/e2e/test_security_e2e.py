"""Authentication, scopes and rate limits, seen from outside."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.helpers import assert_problem, create_key

#: (method, path, json body, scope that grants it)
ROUTES = [
    ("POST", "/v1/tasks", {"type": "echo", "queue": "e2e-scopes", "delay_s": 600}, "tasks:write"),
    ("GET", "/v1/queues", None, "tasks:read"),
    ("GET", "/metrics", None, "tasks:read"),
    ("GET", "/v1/dlq", None, "admin"),
    ("GET", "/v1/keys", None, "admin"),
]


async def test_no_key_or_bad_key_is_401(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/queues")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    bad = {"Authorization": "Bearer tfk_" + "x" * 43}
    assert_problem(await anonymous.get("/v1/queues", headers=bad), 401)
    assert_problem(await anonymous.get("/v1/queues", headers={"X-API-Key": "nope"}), 401)


@pytest.mark.parametrize("granted", ["tasks:read", "tasks:write", "admin"])
async def test_scope_matrix(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient, granted: str
) -> None:
    key = await create_key(admin, [granted])
    for method, path, body, needed in ROUTES:
        response = await anonymous.request(method, path, json=body, headers={"X-API-Key": key})
        allowed = granted == needed or granted == "admin"
        if allowed:
            assert response.status_code < 300, (granted, method, path, response.text)
        else:
            assert_problem(response, 403)


async def test_revoked_key_is_refused(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    created = await admin.post("/v1/keys", json={"name": "short-lived", "scopes": ["tasks:read"]})
    key, key_id = created.json()["key"], created.json()["id"]
    assert (await anonymous.get("/v1/queues", headers={"X-API-Key": key})).status_code == 200
    listed = (await admin.get("/v1/keys")).json()
    assert key not in str(listed)
    assert (await admin.delete(f"/v1/keys/{key_id}")).status_code == 204
    async with asyncio.timeout(15):  # revocation reaches every gateway within its cache TTL
        while (await anonymous.get("/v1/queues", headers={"X-API-Key": key})).status_code != 401:
            await asyncio.sleep(0.5)


async def test_rate_limit_answers_429_with_headers(
    admin: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    # One request per 5 s: the burst cannot refill between the first requests.
    key = await create_key(admin, ["tasks:read"], rate_per_s=0.2, burst=3)
    headers = {"Authorization": f"Bearer {key}"}
    statuses = []
    for _ in range(4):
        response = await anonymous.get("/v1/queues", headers=headers)
        statuses.append(response.status_code)
        assert "ratelimit-limit" in response.headers
        assert "ratelimit-remaining" in response.headers
    assert statuses == [200, 200, 200, 429]
    limited = await anonymous.get("/v1/queues", headers=headers)
    assert_problem(limited, 429)
    assert 1 <= int(limited.headers["retry-after"]) <= 5
    async with asyncio.timeout(30):  # generous: a token comes back within 5 s
        while (await anonymous.get("/v1/queues", headers=headers)).status_code == 429:
            await asyncio.sleep(0.25)
