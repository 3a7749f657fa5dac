"""503 handling: Redis of a real stack stopped, then started again while the client retries."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.devstack import Stack
from taskforge_client import RetryPolicy, ServiceUnavailable, TaskForge
from tests.client.conftest import start_stack

#: Stopped Redis processes, kept until the end so their log pipes are closed, not collected.
RETIRED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own: its Redis is stopped and restarted."""
    stack = start_stack(Path(tmp_path_factory.mktemp("outage-stack")))
    try:
        yield stack
    finally:
        stack.stop()
        for proc in RETIRED:
            if proc.stdout is not None:
                proc.stdout.close()


def stop_redis(stack: Stack) -> list[str]:
    """Stop the stack's Redis (AOF kept); returns its command line."""
    redis = stack.procs["redis"]
    redis.terminate()
    redis.wait(15)
    RETIRED.append(redis)
    return [str(a) for a in redis.args]  # type: ignore[union-attr]


def start_redis(stack: Stack, argv: list[str]) -> None:
    """Start Redis again on the same port and directory; ``stack.stop`` stops it."""
    stack.procs["redis"] = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def test_503_is_retried_after_retry_after_until_redis_is_back(own_stack: Stack) -> None:
    seen: list[int] = []
    hooks = {"response": [lambda r: seen.append(r.status_code)]}
    with httpx.Client(timeout=30, event_hooks=hooks) as http:
        client = TaskForge(own_stack.url, own_stack.admin_key, http_client=http,
                           retry=RetryPolicy(max_retries=1))  # fmt: skip
        before = client.enqueue("echo", {"n": 1})
        argv = stop_redis(own_stack)
        try:
            seen.clear()
            with pytest.raises(ServiceUnavailable) as caught:
                client.enqueue("echo", {"n": 2})
            assert caught.value.status == 503 and caught.value.retry_after == 1
            assert seen == [503, 503]  # one retry, as allowed, after Retry-After
            # Redis comes back while the client waits out Retry-After: the call succeeds.
            seen.clear()
            patient = TaskForge(own_stack.url, own_stack.admin_key, http_client=http,
                                retry=RetryPolicy(max_retries=20))  # fmt: skip
            threading.Timer(1.5, start_redis, (own_stack, argv)).start()
            after = patient.enqueue("echo", {"n": 3})
            assert seen[0] == 503 and seen[-1] == 201
            assert patient.wait(after.id, timeout_s=30).result == {"n": 3}
            assert patient.get(before.id).id == before.id  # the AOF kept it
        finally:
            if own_stack.procs["redis"].poll() is not None:
                start_redis(own_stack, argv)
