"""Fixtures shared by the handler tests: a clean environment, an HTTP client, an HTTP sink."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from taskforge.net.egress import handler_client
from taskforge.settings.handlers import HandlerSettings
from tests.support.http_sink import HttpSink

#: The sinks listen on 127.0.0.1, which the egress guard refuses unless it is allowed.
SINK_ALLOW_CIDRS = ("127.0.0.1/32",)


def handler_settings(**overrides: Any) -> HandlerSettings:
    """Settings for handler tests: dev mode, no Redis, the sinks' address allowed."""
    values: dict[str, Any] = {
        "redis_url": "redis://unused",
        "env": "dev",
        "http_allow_cidrs": SINK_ALLOW_CIDRS,
    }
    values.update(overrides)
    return HandlerSettings(**values)


@pytest.fixture(autouse=True)
def _no_taskforge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKFORGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The handlers' egress-guarded client, allowing only 127.0.0.1 beyond public addresses.

    It never uses proxy variables, so a proxy configured on the machine cannot sit between
    the tests and 127.0.0.1.
    """
    async with handler_client(handler_settings()) as client:
        yield client


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as sink:
        yield sink
