"""A private local stack for fuzzing (destructive operations are fuzzed too)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.devstack import Stack, free_port


@pytest.fixture(scope="session")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """api, gateway, worker and scheduler with rate limits high enough not to mask bugs."""
    stack = Stack(
        gateway_port=free_port(),
        data_dir=Path(tmp_path_factory.mktemp("fuzz-stack")),
        quiet=True,
        extra_env={"TASKFORGE_DEFAULT_RATE_PER_S": "100000", "TASKFORGE_DEFAULT_BURST": "100000"},
    )
    try:
        stack.start(timeout_s=60)
        yield stack
    finally:
        stack.stop()
