"""The built images, run as the chart runs them, carry tasks: gateway -> api -> Redis <- worker.

Five containers (Redis's stand-in and the four services) start from the rendered chart with its
security context (uid 10001, read-only root, every capability dropped, no-new-privileges, the
runtime's default seccomp profile). Through the gateway container: an API key is created, a task
succeeds, a failing task spends its retries and is listed in the DLQ, and a worker container
stopped with SIGTERM while a task runs gives it back without spending an attempt; restarted, it
runs the task to success.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import yaml

from scripts.chart_launch import secret_value
from tests.chart.helm import CHART, Doc, by_component, containers
from tests.e2e.helpers import create_key, wait_for_state
from tests.images.containers import ContainerStack

pytestmark = [pytest.mark.images, pytest.mark.timeout(300)]

COMPONENTS = ("redis", "api", "gateway", "worker", "scheduler")


def chart_values() -> dict[str, Any]:
    """The chart's default values.yaml."""
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def bootstrap_key(docs: list[Doc]) -> str:
    """The admin key the chart's Secret gives the gateway."""
    env = containers(by_component(docs, "Deployment", "gateway"))[0]["env"]
    (ref,) = [
        e["valueFrom"]["secretKeyRef"] for e in env if e["name"] == "TASKFORGE_BOOTSTRAP_API_KEY"
    ]
    key = secret_value(docs, ref["name"], ref["key"])
    assert key, "the chart rendered no bootstrap API key"
    return key


@pytest.fixture
async def admin(
    image_stack: ContainerStack, image_docs: list[Doc]
) -> AsyncIterator[httpx.AsyncClient]:
    url = f"http://127.0.0.1:{image_stack.ports['gateway']}"
    headers = {"Authorization": f"Bearer {bootstrap_key(image_docs)}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def producer(
    image_stack: ContainerStack, admin: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a key of its own (tasks:read, tasks:write), made through the admin route."""
    key = await create_key(admin, ["tasks:read", "tasks:write"])
    url = f"http://127.0.0.1:{image_stack.ports['gateway']}"
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        yield client


async def enqueue(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def status_fields(text: str) -> dict[str, str]:
    """``Name:\\tvalue`` lines of /proc/<pid>/status."""
    return dict(re.findall(r"^(\w+):\s*(.*)$", text, re.MULTILINE))


@pytest.mark.parametrize("component", COMPONENTS)
def test_container_runs_with_the_chart_security_context(
    image_stack: ContainerStack, component: str
) -> None:
    assert image_stack.processes[component].proc.poll() is None, image_stack.describe()
    status = image_stack.exec(component, "cat", "/proc/1/status")
    assert status.returncode == 0, status.stderr
    fields = status_fields(status.stdout)
    assert fields["Uid"].split()[:2] == ["10001", "10001"]
    assert fields["Gid"].split()[:2] == ["10001", "10001"]
    # A non-root process has no effective capabilities anyway: the bounding set shows the drop.
    assert int(fields["CapBnd"], 16) == 0 and int(fields["CapEff"], 16) == 0, fields
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"  # a filter is loaded (podman's default profile)
    write = image_stack.exec(component, "touch", "/app-probe")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, write
    scratch = image_stack.exec(component, "touch", "/tmp/probe")
    assert scratch.returncode == 0, scratch.stderr
    assert image_stack.inspect(component)["HostConfig"]["ReadonlyRootfs"] is True


def test_redis_runs_the_image_the_chart_names(
    image_stack: ContainerStack, image_docs: list[Doc]
) -> None:
    chart_image = containers(by_component(image_docs, "StatefulSet", "redis"))[0]["image"]
    assert chart_image == "{repository}:{tag}".format(**chart_values()["redis"]["image"])
    # What podman resolved the short name to: the stand-in stored under Docker Hub's name.
    assert image_stack.inspect("redis")["ImageName"] == f"docker.io/library/{chart_image}"
    version = image_stack.exec("redis", "redis-server", "--version")
    assert version.returncode == 0 and "Redis server v=7." in version.stdout, version


async def test_a_task_succeeds_through_the_containers(
    producer: httpx.AsyncClient, summary: dict[str, Any]
) -> None:
    payload = {"through": ["gateway", "api", "worker"], "n": 7}
    task_id = await enqueue(producer, {"type": "echo", "payload": payload})
    record = await wait_for_state(producer, task_id, {"succeeded", "dead"}, timeout_s=60)
    assert record["state"] == "succeeded", record
    assert record["result"] == payload and record["attempts"] == 1
    summary["succeeded"] = summary.get("succeeded", 0) + 1


async def test_a_failing_task_ends_in_the_dlq(
    producer: httpx.AsyncClient, admin: httpx.AsyncClient, summary: dict[str, Any]
) -> None:
    body = {"type": "fail", "max_retries": 2, "backoff": {"kind": "fixed", "base_s": 0.2}}
    task_id = await enqueue(producer, body)
    record = await wait_for_state(producer, task_id, {"dead", "succeeded"}, timeout_s=60)
    assert record["state"] == "dead" and record["attempts"] == 3, record
    listing = await admin.get("/v1/dlq", params={"queue": "default", "limit": 100})
    assert listing.status_code == 200, listing.text
    (item,) = [i for i in listing.json()["items"] if i["id"] == task_id]
    assert item["dead_reason"] == "retries_exhausted", item
    summary["dead"] = summary.get("dead", 0) + 1


async def test_sigterm_of_the_worker_container_gives_its_task_back(
    image_stack: ContainerStack, producer: httpx.AsyncClient, summary: dict[str, Any]
) -> None:
    summary["giveback"] = "failed"
    task_id = await enqueue(producer, {"type": "sleep", "payload": {"seconds": 5}})
    await wait_for_state(producer, task_id, {"running"}, timeout_s=60)
    exit_code = image_stack.stop_container("worker", timeout_s=30)
    assert exit_code == 0, image_stack.describe()
    returned = (await producer.get(f"/v1/tasks/{task_id}")).json()
    assert returned["state"] == "queued" and returned["attempts"] == 0, returned
    assert returned["events"][-1]["event"] == "returned", returned["events"]
    image_stack.restart("worker")
    record = await wait_for_state(producer, task_id, {"succeeded", "dead"}, timeout_s=60)
    assert record["state"] == "succeeded" and record["attempts"] == 1, record
    summary["giveback"] = "ok"
    summary["succeeded"] = summary.get("succeeded", 0) + 1
