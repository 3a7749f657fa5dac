"""Small helpers for e2e tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


async def create_key(admin: httpx.AsyncClient, scopes: list[str], **limits: Any) -> str:
    """Create an API key with ``scopes`` and return it."""
    response = await admin.post("/v1/keys", json={"name": "e2e", "scopes": scopes, **limits})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


async def wait_for_state(
    client: httpx.AsyncClient, task_id: str, states: set[str], timeout_s: float = 30
) -> dict[str, Any]:
    """Poll a task until its state is one of ``states``."""
    record: dict[str, Any] = {}
    async with asyncio.timeout(timeout_s):
        while True:
            response = await client.get(f"/v1/tasks/{task_id}")
            assert response.status_code == 200, response.text
            record = response.json()
            if record["state"] in states:
                return record
            await asyncio.sleep(0.1)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body
