"""The client library against the real local stack: every call crosses real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from scripts.devstack import Stack, free_port
from taskforge_client import (
    AsyncTaskForge,
    AuthenticationError,
    ConfigurationError,
    InvalidRequest,
    NewTask,
    NotFound,
    PermissionDenied,
    RateLimited,
    RetryPolicy,
    TaskForge,
    TaskState,
    Unreachable,
    WaitTimeout,
)
from tests.client.conftest import BATCH_LIMIT


class Recorder:
    """Every response the client received, as (method, path, status)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def __call__(self, response: httpx.Response) -> None:
        request = response.request
        self.seen.append((request.method, request.url.path, response.status_code))


@pytest.fixture
def recorded(stack: Stack) -> Iterator[tuple[TaskForge, Recorder]]:
    recorder = Recorder()
    with httpx.Client(timeout=30, event_hooks={"response": [recorder]}) as http:
        yield TaskForge(stack.url, stack.admin_key, http_client=http), recorder


def test_enqueue_wait_get_a_task(client: TaskForge) -> None:
    created = client.enqueue("echo", {"hello": "client"})
    assert created.created and created.state is TaskState.QUEUED
    task = client.wait(created.id, timeout_s=30)
    assert task.state is TaskState.SUCCEEDED and task.result == {"hello": "client"}
    assert [e.event for e in task.events][:2] == ["enqueued", "started"]
    assert client.get(created.id).finished_at is not None


async def test_async_client_does_the_same(stack: Stack) -> None:
    async with AsyncTaskForge(stack.url, stack.admin_key) as tf:
        created = await tf.enqueue("echo", [1, 2])
        task = await tf.wait(created.id, timeout_s=30)
        assert task.result == [1, 2]
        with pytest.raises(NotFound):
            await tf.get("default.0123456789abcdef")
        assert any(q.queue == "default" for q in await tf.queues())


def test_each_call_has_its_own_idempotency_key_and_a_given_one_replays(
    client: TaskForge, queue: str
) -> None:
    first = client.enqueue("echo", queue=queue)
    second = client.enqueue("echo", queue=queue)
    assert first.id != second.id  # two calls, two tasks
    generated = client.get(first.id).idempotency_key
    assert generated  # the key the client made up travelled with the request
    replay = client.enqueue("echo", queue=queue, idempotency_key=generated)
    assert (replay.id, replay.created) == (first.id, False)
    assert client.queue(queue).queued == 2


def test_enqueue_many_learns_the_servers_batch_limit(
    recorded: tuple[TaskForge, Recorder], queue: str
) -> None:
    client, recorder = recorded
    tasks = [NewTask(type="echo", queue=queue, payload={"n": n}) for n in range(25)]
    created = client.enqueue_many(tasks)
    assert len({c.id for c in created}) == 25
    batches = [status for _, path, status in recorder.seen if path == "/v1/tasks/batch"]
    # 1000 refused (nothing written), then chunks of the limit: 10 + 10 + 5.
    assert batches == [422, 201, 201, 201]
    assert client.queue(queue).queued == 25
    payloads = [client.get(c.id).payload for c in created[:3]]
    assert payloads == [{"n": 0}, {"n": 1}, {"n": 2}]  # in the order given


def test_enqueue_many_chunks_and_replays_without_duplicates(
    recorded: tuple[TaskForge, Recorder], queue: str
) -> None:
    client, recorder = recorded
    tasks = [{"type": "echo", "queue": queue, "idempotency_key": f"k{n}"} for n in range(9)]
    first = client.enqueue_many(tasks, chunk_size=4)
    assert [s for _, p, s in recorder.seen if p == "/v1/tasks/batch"] == [201, 201, 201]
    again = client.enqueue_many(tasks, chunk_size=BATCH_LIMIT)
    assert [c.id for c in again] == [c.id for c in first]
    assert not any(c.created for c in again)
    assert client.queue(queue).queued == 9


def test_invalid_task_is_a_422_with_field_errors(client: TaskForge) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.enqueue("echo", max_retries=-1)
    assert caught.value.status == 422
    assert caught.value.problem.errors and "max_retries" in caught.value.problem.errors[0].loc


def test_missing_task_is_not_found_with_its_problem(client: TaskForge) -> None:
    missing = "default.0123456789abcdef0123456789abcdef"
    with pytest.raises(NotFound) as caught:
        client.get(missing)
    problem = caught.value.problem
    assert (problem.status, problem.slug) == (404, "task-not-found")
    assert caught.value.request_id
    with pytest.raises(NotFound):
        client.cancel(missing)


def test_cancel_a_waiting_task(client: TaskForge, queue: str) -> None:
    created = client.enqueue("echo", queue=queue, delay_s=3600)
    assert client.cancel(created.id).status == "cancelled"
    assert client.wait(created.id, timeout_s=10).state is TaskState.CANCELLED


def test_wait_times_out_with_the_last_state(client: TaskForge, queue: str) -> None:
    created = client.enqueue("echo", queue=queue)  # no worker reads this queue
    with pytest.raises(WaitTimeout) as caught:
        client.wait(created.id, timeout_s=0.3)
    assert caught.value.task.state is TaskState.QUEUED


def test_revoked_key_and_missing_scope(client: TaskForge, stack: Stack) -> None:
    new = client.keys.create(f"lib-{uuid.uuid4().hex[:6]}", ["tasks:read"])
    assert new.key.startswith("tfk_")
    with TaskForge(stack.url, new.key) as reader:
        assert isinstance(reader.queues(), list)
        with pytest.raises(PermissionDenied):
            reader.dlq.list()
        client.keys.revoke(new.id)
        with pytest.raises(AuthenticationError) as caught:
            reader.queues()
        assert caught.value.status == 401
    assert next(k for k in client.keys.list() if k.id == new.id).revoked


def test_429_waits_for_retry_after_then_succeeds(
    client: TaskForge, recorded: tuple[TaskForge, Recorder], stack: Stack
) -> None:
    _, recorder = recorded
    limited = client.keys.create(f"slow-{uuid.uuid4().hex[:6]}", ["tasks:read"],
                                 rate_per_s=0.5, burst=1)  # fmt: skip
    no_retry = RetryPolicy(max_retries=0)
    with TaskForge(stack.url, limited.key, retry=no_retry) as impatient:
        impatient.queues()
        with pytest.raises(RateLimited) as caught:
            impatient.queues()
    assert caught.value.retry_after is not None and caught.value.retry_after >= 1
    assert caught.value.problem.slug == "rate-limited"
    with httpx.Client(timeout=30, event_hooks={"response": [recorder]}) as http:
        patient = TaskForge(stack.url, limited.key, http_client=http)
        patient.queues()  # the bucket may still be empty from above: a 429 first is fine
        recorder.seen.clear()
        patient.queues()
    statuses = [status for _, path, status in recorder.seen if path == "/v1/queues"]
    assert statuses[-1] == 200 and statuses.count(429) == 1, statuses


def test_dlq_list_requeue_purge(client: TaskForge) -> None:
    created = client.enqueue("fail", {"permanent": True}, max_retries=0)
    dead = client.wait(created.id, timeout_s=30)
    assert dead.state is TaskState.DEAD and dead.dead_reason
    page = client.dlq.list("default", task_type="fail", limit=500)
    assert created.id in [t.id for t in page.items]
    assert client.dlq.requeue(created.id) == 1
    assert client.wait(created.id, timeout_s=30).state is TaskState.DEAD
    with pytest.raises(ValueError, match="queue"):
        client.dlq.purge()
    assert client.dlq.purge("default") >= 1
    assert created.id not in [t.id for t in client.dlq.list("default", limit=500).items]


def test_unreachable_and_unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with (
        TaskForge(nowhere, "tfk_x", retry=RetryPolicy(max_retries=1)) as tf,
        pytest.raises(Unreachable, match="no answer"),
    ):
        tf.queues()
    monkeypatch.delenv("TASKFORGE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="TASKFORGE_API_KEY"):
        TaskForge(nowhere)
    monkeypatch.setenv("TASKFORGE_API_KEY", "tfk_from_env")
    monkeypatch.setenv("TASKFORGE_URL", nowhere + "/")
    assert TaskForge().config.url == nowhere


async def test_async_batches_dlq_and_keys(stack: Stack, queue: str) -> None:
    async with AsyncTaskForge(stack.url, stack.admin_key) as tf:
        created = await tf.enqueue_many([{"type": "echo", "queue": queue}] * 12)
        assert len({c.id for c in created}) == 12 and (await tf.queue(queue)).queued == 12
        assert (await tf.cancel(created[0].id)).status == "cancelled"
        dead = await tf.enqueue("fail", {"permanent": True}, max_retries=0)
        assert (await tf.wait(dead.id, timeout_s=30)).state is TaskState.DEAD
        page = await tf.dlq.list("default", task_type="fail", limit=500)
        assert dead.id in [t.id for t in page.items]
        assert await tf.dlq.requeue(dead.id) == 1
        key = await tf.keys.create(f"aio-{uuid.uuid4().hex[:6]}", ["tasks:read"])
        await tf.keys.revoke(key.id)
        assert next(k for k in await tf.keys.list() if k.id == key.id).revoked
        async with AsyncTaskForge(stack.url, key.key) as revoked:
            with pytest.raises(AuthenticationError):
                await revoked.queues()
