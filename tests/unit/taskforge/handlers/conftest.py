"""Fixtures shared by the handler tests: a clean environment, an HTTP client, an HTTP sink."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.http_sink import HttpSink


@pytest.fixture(autouse=True)
def _no_taskforge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKFORGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # trust_env=False: a proxy configured on the machine must not sit between us and 127.0.0.1.
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    async with HttpSink() as sink:
        yield sink
