"""SSRF through the ``http`` handler, end to end: a real worker process, real Redis, a real
HTTP server on 127.0.0.1 standing in for an internal service.

A task aimed at a refused address ends dead on its first attempt (non-retryable, whatever
retry budget it has) with an error that names the address, its class and the setting that
would allow it; the internal server never sees a request. With the address allowed by the
worker's ``TASKFORGE_HTTP_ALLOW_CIDRS`` the same task is delivered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskforge.broker import Broker
from taskforge.broker.admin import get_task
from taskforge.models import DeadReason, TaskRecord, TaskSpec, TaskState
from tests.integration.conftest import enqueue
from tests.support.http_sink import HttpSink
from tests.support.processes import ServiceGroup, tf_env, wait_until

#: Generous: a worker process starts in a few seconds on a loaded machine.
STEP_TIMEOUT_S = 60.0


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServiceGroup]:
    with ServiceGroup(log_dir=tmp_path / "logs") as group:
        yield group


async def wait_finished(broker: Broker, task_id: str, services: ServiceGroup) -> TaskRecord:
    """The task's record once it is dead or succeeded; a failure quotes the worker's log."""

    async def finished() -> TaskRecord | None:
        record = await get_task(broker, task_id)
        return record if record.state in (TaskState.DEAD, TaskState.SUCCEEDED) else None

    record: TaskRecord = await wait_until(
        finished, STEP_TIMEOUT_S, message=f"{task_id} never finished", processes=services.processes
    )
    return record


def http_task(queue: str, url: str) -> TaskSpec:
    # A budget of retries, so that "dead after one attempt" shows the refusal is final.
    return TaskSpec(type="http", queue=queue, payload={"url": url}, max_retries=5)


async def test_tasks_aimed_at_refused_addresses_are_dead_at_once(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup
) -> None:
    async with HttpSink() as internal:
        cases = {
            f"{internal.url}/admin": (
                "DestinationRefused: destination 127.0.0.1 is not allowed (loopback); "
                "allow it with TASKFORGE_HTTP_ALLOW_CIDRS"
            ),
            f"http://2130706433:{internal.port}/admin": (
                "DestinationRefused: destination 2130706433 (127.0.0.1) is not allowed "
                "(loopback); allow it with TASKFORGE_HTTP_ALLOW_CIDRS"
            ),
            f"http://localhost:{internal.port}/admin": (
                "DestinationRefused: destination localhost (127.0.0.1) is not allowed "
                "(loopback); allow it with TASKFORGE_HTTP_ALLOW_HOSTS or "
                "TASKFORGE_HTTP_ALLOW_CIDRS"
            ),
            "http://169.254.169.254/latest/meta-data/": (
                "DestinationRefused: destination 169.254.169.254 is not allowed (cloud "
                "metadata); only TASKFORGE_HTTP_ALLOW_CIDRS=169.254.169.254/32 allows it"
            ),
        }
        results = await enqueue(broker, *[http_task(queue_name, url) for url in cases])
        services.worker(redis_url, queue_name)

        records = [await wait_finished(broker, r.task_id, services) for r in results]

        assert internal.requests == []
    for record, error in zip(records, cases.values(), strict=True):
        assert (record.state, record.dead_reason) == (TaskState.DEAD, DeadReason.NON_RETRYABLE)
        assert record.attempts == 1
        assert record.last_error == error
        assert [e.event for e in record.events][-1] == "dead"


async def test_an_allowed_address_is_delivered_and_its_body_not_kept(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup
) -> None:
    async with HttpSink() as internal:
        internal.respond(200, body={"secret": "internal data"})
        [result] = await enqueue(broker, http_task(queue_name, f"{internal.url}/hook"))
        services.worker(redis_url, queue_name, env=tf_env(http_allow_cidrs="127.0.0.1/32"))

        record = await wait_finished(broker, result.task_id, services)

        assert [r.headers["x-taskforge-task-id"] for r in internal.requests] == [result.task_id]
    assert record.state is TaskState.SUCCEEDED
    assert record.result == {"status": 200}
