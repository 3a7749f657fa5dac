"""The chart-driven launch: the services start from the rendered manifests (container commands,
ConfigMaps, Secrets) and a task goes through the gateway to a worker and back.

Only what Kubernetes provides is mapped (scripts/chart_launch.py): Service names become
127.0.0.1 ports and listening ports become free ones. Redis runs the chart's own container
command and redis.conf with the rendered password, so a wrong setting anywhere in the chart's
wiring (a missing variable, a key in the wrong Secret, an unknown TASKFORGE_* name, a bad
redis.conf line) fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from scripts.chart_launch import ChartStack, secret_value
from tests.chart.helm import Doc, by_component, containers, one, render

VALUES_FILE = "k8s/values-dev.yaml"


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    """The chart rendered with the developer values."""
    return render(files=(VALUES_FILE,))


@pytest.fixture(scope="module")
def stack(docs: list[Doc], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartStack]:
    """Redis, api, gateway, worker and scheduler started from the rendered manifests."""
    with ChartStack(docs, work_dir=tmp_path_factory.mktemp("chart-stack")) as started:
        yield started


def _bootstrap_key(docs: list[Doc]) -> str:
    env = containers(by_component(docs, "Deployment", "gateway"))[0]["env"]
    (ref,) = [
        e["valueFrom"]["secretKeyRef"] for e in env if e["name"] == "TASKFORGE_BOOTSTRAP_API_KEY"
    ]
    key = secret_value(docs, ref["name"], ref["key"])
    assert key is not None and len(key) >= 24
    return key


def _call(url: str, key: str | None, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_an_echo_task_goes_through_the_gateway_to_a_worker(
    stack: ChartStack, docs: list[Doc]
) -> None:
    base = f"http://127.0.0.1:{stack.ports['gateway']}"
    key = _bootstrap_key(docs)
    payload = {"launched": "from the chart", "n": 1}
    status, task = _call(f"{base}/v1/tasks", key, "POST", {"type": "echo", "payload": payload})
    assert status == 201, (status, task, stack.describe())
    assert task["created"] is True, task
    deadline = time.monotonic() + 30
    while True:
        status, record = _call(f"{base}/v1/tasks/{task['id']}", key)
        assert status == 200, record
        if record["state"] == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert record["state"] == "succeeded", f"{record}\n{stack.describe()}"
    assert record["result"] == payload

    status, listing = _call(f"{base}/v1/queues", key)
    assert status == 200, listing
    (default,) = [q for q in listing["queues"] if q["queue"] == "default"]
    assert default["counters"]["succeeded"] >= 1


def test_the_gateway_refuses_requests_without_the_key(stack: ChartStack) -> None:
    status, problem = _call(f"http://127.0.0.1:{stack.ports['gateway']}/v1/queues", None)
    assert status == 401, problem


def test_the_api_refuses_requests_without_the_internal_token(
    stack: ChartStack, docs: list[Doc]
) -> None:
    status, problem = _call(
        f"http://127.0.0.1:{stack.ports['api']}/v1/queues", _bootstrap_key(docs)
    )
    # 401, not 403: the api knows no API keys, only the gateway's internal token.
    assert status == 401, problem
    assert problem["status"] == 401, problem


def test_every_service_exposes_metrics(stack: ChartStack) -> None:
    for service in ("gateway", "api", "worker", "scheduler"):
        port = stack.envs[service]["TASKFORGE_METRICS_PORT"]
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert b"taskforge_" in response.read(), service


def test_the_helm_test_pod_passes_against_the_stack(stack: ChartStack, docs: list[Doc]) -> None:
    """The `helm test` pod's own script, with its rendered env, run against this gateway."""
    container = containers(one(docs, "Pod"))[0]
    result = stack.run_pod_command(
        container,
        {"TASKFORGE_E2E_URL": f"http://127.0.0.1:{stack.ports['gateway']}"},
        timeout_s=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr + stack.describe()
    assert "PASS" in result.stdout


def test_redis_runs_the_rendered_configuration(stack: ChartStack, docs: list[Doc]) -> None:
    password = stack.processes["redis"].env["REDIS_PASSWORD"]
    client = redis.Redis(port=stack.ports["redis"], password=password)
    try:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=stack.ports["redis"]).ping()
    finally:
        client.close()
    assert Path(stack.work_dir / "redis-data" / "appendonlydir").is_dir()


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_the_redis_probes_pass_with_the_password_and_fail_without(
    stack: ChartStack, docs: list[Doc], probe: str
) -> None:
    container = containers(by_component(docs, "StatefulSet", "redis"))[0]
    command = [
        part.replace("-p 6379", f"-p {stack.ports['redis']}")
        for part in container[probe]["exec"]["command"]
    ]
    password = stack.processes["redis"].env["REDISCLI_AUTH"]
    ok = subprocess.run(command, env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": password},
                        capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(command, env={"PATH": os.environ["PATH"], "REDISCLI_AUTH": "wrong"},
                         capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    assert bad.returncode != 0
