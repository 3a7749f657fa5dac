"""The e2e suite talks only to a gateway's HTTP API.

By default it starts the local stack (``scripts.devstack.Stack``) on free ports. Given
``TASKFORGE_E2E_URL`` and ``TASKFORGE_E2E_API_KEY`` (an admin key) it runs unchanged against
any deployment, e.g. a kind cluster through a port-forward. The deployment's worker must
consume the ``default`` queue.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scripts.devstack import Stack, free_port


@dataclass(frozen=True)
class Target:
    """Where the gateway is and an admin key for it."""

    url: str
    admin_key: str


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    url = os.environ.get("TASKFORGE_E2E_URL")
    if url:
        key = os.environ.get("TASKFORGE_E2E_API_KEY")
        if not key:
            pytest.fail("TASKFORGE_E2E_URL is set but TASKFORGE_E2E_API_KEY is not", pytrace=False)
        yield Target(url.rstrip("/"), key)
        return
    stack = Stack(
        gateway_port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("stack")),
        quiet=True,
        extra_env={
            "TASKFORGE_TICK_S": "0.1",
            "TASKFORGE_BLOCK_MS": "200",
            "TASKFORGE_LEASE_S": "5",
            "TASKFORGE_HEARTBEAT_INTERVAL_S": "1",
        },
    )
    try:
        stack.start(timeout_s=60)
        yield Target(stack.url, stack.admin_key)
    finally:
        stack.stop()


@pytest.fixture
async def admin(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated with the admin key."""
    headers = {"Authorization": f"Bearer {target.admin_key}"}
    async with httpx.AsyncClient(base_url=target.url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def anonymous(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials."""
    async with httpx.AsyncClient(base_url=target.url, timeout=30) as client:
        yield client


@pytest.fixture
def unique_queue() -> str:
    """A queue no worker consumes (for consume-once and DLQ tests)."""
    return "e2e-" + uuid.uuid4().hex[:10]
