"""The client and the CLI against a real local stack (``scripts.devstack.Stack``).

Fixtures:
    stack (session): redis, api, gateway, worker and scheduler as real processes on free ports,
        with a batch limit of :data:`BATCH_LIMIT` so that chunking shows with few tasks.
    client (function): a :class:`taskforge_client.TaskForge` with the admin key.
    queue (function): a fresh queue name no worker consumes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.devstack import Stack, free_port
from taskforge_client import TaskForge

#: ``TASKFORGE_MAX_BATCH_SIZE`` of the test stack.
BATCH_LIMIT = 10

FAST = {
    "TASKFORGE_TICK_S": "0.1",
    "TASKFORGE_BLOCK_MS": "200",
    "TASKFORGE_LEASE_S": "5",
    "TASKFORGE_HEARTBEAT_INTERVAL_S": "1",
}


def start_stack(data_dir: Path, **extra_env: str) -> Stack:
    """A started stack (stopped by the caller)."""
    stack = Stack(gateway_port=free_port(), data_dir=data_dir, quiet=True,
                  extra_env={**FAST, **extra_env})  # fmt: skip
    try:
        stack.start(timeout_s=60)
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("client-stack"), TASKFORGE_MAX_BATCH_SIZE=str(BATCH_LIMIT)
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[TaskForge]:
    with TaskForge(stack.url, stack.admin_key) as tf:
        yield tf


@pytest.fixture
def queue() -> str:
    return "cli-" + uuid.uuid4().hex[:10]
