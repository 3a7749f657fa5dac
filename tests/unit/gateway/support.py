"""Helpers shared by the gateway tests (fixtures live in conftest.py)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx

from taskforge.apikeys import ApiKey
from taskforge.settings import GatewaySettings

INTERNAL_TOKEN = "internal-token-for-gateway-tests-0123"

MakeKey = Callable[..., Awaitable[tuple[str, ApiKey]]]
MakeGateway = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def unique_client_address() -> str:
    """A client address no other test uses (failed-auth counters are per address)."""
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


def gateway_settings(**overrides: Any) -> GatewaySettings:
    """Gateway settings for tests (dev mode); pass at least ``redis_url`` and ``api_url``."""
    values: dict[str, Any] = {
        "env": "dev",
        "internal_token": INTERNAL_TOKEN,
        "metrics_port": 0,
        "port": 0,
        **overrides,
    }
    return GatewaySettings(**values)


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header for ``secret``."""
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """Check a problem document and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"https://taskforge.dev/problems/{kind}", body
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return body
