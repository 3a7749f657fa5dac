"""A 500 is a bug: answered as a problem, logged with its traceback, never leaked."""

from __future__ import annotations

import logging

import pytest

from taskforge.apikeys import ApiKeyStore
from taskforge_gateway import auth
from tests.unit.gateway.support import MakeGateway, MakeKey, assert_problem, bearer


async def _explode(*args: object, **kwargs: object) -> None:
    raise RuntimeError("internal detail 42")


async def test_a_bug_in_the_pipeline_is_a_500_problem(
    make_gateway: MakeGateway,
    make_key: MakeKey,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret, _ = await make_key("tasks:read")
    monkeypatch.setattr(auth, "check_rate", _explode)
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/queues", headers=bearer(secret))
    body = assert_problem(response, 500, "internal-error")
    assert "internal detail" not in response.text
    assert body["detail"] == "an internal error occurred"
    assert "internal detail 42" in caplog.text and "Traceback" in caplog.text


async def test_a_bug_in_a_gateway_route_is_a_500_problem(
    make_gateway: MakeGateway,
    make_key: MakeKey,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret, _ = await make_key("admin")
    caplog.set_level(logging.ERROR)
    monkeypatch.setattr(ApiKeyStore, "list_keys", _explode)
    async with make_gateway() as gateway:
        response = await gateway.get("/v1/keys", headers=bearer(secret))
    assert_problem(response, 500, "internal-error")
    assert "internal detail" not in response.text
    assert "internal detail 42" in caplog.text
