"""The gateway in front of the real api, both as processes, against real Redis.

What only the pair can show: the internal credential is accepted by the api, trace context
reaches the task record, and the public OpenAPI document is the api's plus the gateway's.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port

INTERNAL_TOKEN = "integration-internal-token-" + secrets.token_hex(8)


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    #: Base URL of the metrics port (``/metrics``, ``/healthz``, ``/readyz``).
    metrics_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    env.update({f"TASKFORGE_{k.upper()}": v for k, v in values.items()})
    return env


def start_service(module: str, log_path: Path, **values: str) -> Service:
    port, metrics_port = free_port(), free_port()
    env = _env(port=str(port), metrics_port=str(metrics_port), metrics_host="127.0.0.1", **values)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    service = Service(
        proc, f"http://127.0.0.1:{port}", log_path, f"http://127.0.0.1:{metrics_port}"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{module} exited with {proc.returncode}:\n{service.log()}")
        try:
            if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"{module} did not become healthy:\n{service.log()}")


def stop_service(service: Service) -> None:
    if service.proc.poll() is None:
        service.proc.terminate()
        try:
            service.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.proc.kill()
            service.proc.wait()


@dataclass
class Stack:
    api: Service
    gateway: Service
    admin_key: str


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    admin_key = "bootstrap-" + secrets.token_hex(16)
    api = start_service(
        "taskforge_api.main",
        tmp_path / "api.log",
        redis_url=redis_url,
        internal_token=INTERNAL_TOKEN,
    )
    try:
        gateway = start_service(
            "taskforge_gateway.main",
            tmp_path / "gateway.log",
            redis_url=redis_url,
            api_url=api.url,
            internal_token=INTERNAL_TOKEN,
            bootstrap_api_key=admin_key,
        )
        try:
            yield Stack(api, gateway, admin_key)
        finally:
            stop_service(gateway)
    finally:
        stop_service(api)


def test_enqueue_and_read_through_the_gateway(stack: Stack, queue_name: str) -> None:
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    with httpx.Client(base_url=stack.gateway.url, timeout=15) as client:
        created_key = client.post(
            "/v1/keys",
            json={"name": "integration", "scopes": ["tasks:write", "tasks:read"]},
            headers=admin,
        )
        assert created_key.status_code == 201, created_key.text
        producer = {"X-API-Key": created_key.json()["key"]}

        created = client.post(
            "/v1/tasks",
            json={"type": "echo", "queue": queue_name, "payload": {"n": 1}, "delay_s": 60},
            headers={**producer, "traceparent": parent, "X-Request-Id": "it-req-1"},
        )
        assert created.status_code == 201, created.text
        assert created.headers["x-request-id"] == "it-req-1"
        assert created.headers["ratelimit-remaining"]
        task_id = created.json()["id"]
        assert created.headers["location"] == f"/v1/tasks/{task_id}"

        status = client.get(f"/v1/tasks/{task_id}", headers=producer)
        assert status.status_code == 200, status.text
        assert status.json()["traceparent"] == parent

        legacy = client.post(
            "/enqueue", json={"type": "echo", "queue": queue_name, "delay_s": 60}, headers=producer
        )
        assert legacy.status_code == 200, legacy.text
        record = client.get(f"/tasks/{legacy.json()['task_id']}", headers=producer).json()
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", record["traceparent"])

        forbidden = client.get("/v1/dlq", headers=producer)
        assert forbidden.status_code == 403
        assert client.get("/v1/dlq", headers=admin).status_code == 200


def test_the_api_refuses_callers_without_the_internal_token(stack: Stack) -> None:
    direct = httpx.get(f"{stack.api.url}/v1/queues", timeout=10)
    assert direct.status_code == 401
    forged = httpx.get(
        f"{stack.api.url}/v1/queues",
        headers={"X-TaskForge-Internal-Token": "wrong"},
        timeout=10,
    )
    assert forged.status_code == 401
    via_gateway = httpx.get(
        f"{stack.gateway.url}/v1/queues",
        headers={"Authorization": f"Bearer {stack.admin_key}"},
        timeout=10,
    )
    assert via_gateway.status_code == 200, via_gateway.text


def test_public_openapi_document_merges_the_apis(stack: Stack) -> None:
    document = httpx.get(f"{stack.gateway.url}/openapi.json", timeout=10).json()
    paths = document["paths"]
    for path in ("/v1/tasks", "/v1/tasks/{task_id}", "/enqueue", "/v1/keys", "/v1/keys/{key_id}"):
        assert path in paths, path
    assert set(document["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}
    responses = paths["/v1/tasks"]["post"]["responses"]
    for status in ("401", "403", "413", "415", "429", "502", "503", "504"):
        assert "application/problem+json" in responses[status]["content"], status
    assert "/healthz" not in paths


def test_a_revoked_key_is_refused_at_once_by_every_replica(
    stack: Stack, redis_url: str, tmp_path: Path
) -> None:
    """Revocation bound: the first request that starts after the revocation is refused."""
    other = start_service(
        "taskforge_gateway.main",
        tmp_path / "gateway-b.log",
        redis_url=redis_url,
        api_url=stack.api.url,
        internal_token=INTERNAL_TOKEN,
    )
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    try:
        with httpx.Client(timeout=15) as client:
            created = client.post(
                f"{stack.gateway.url}/v1/keys",
                json={"name": "revoked-soon", "scopes": ["tasks:read"]},
                headers=admin,
            )
            assert created.status_code == 201, created.text
            key = {"X-API-Key": created.json()["key"]}
            replicas = [stack.gateway.url, other.url]
            for _ in range(3):  # each replica now holds the key in its cache
                assert [
                    client.get(f"{r}/v1/queues", headers=key).status_code for r in replicas
                ] == [
                    200,
                    200,
                ]
            # Revoked by another process altogether: the operator's taskforge-admin.
            revoked = subprocess.run(
                [sys.executable, "-m", "taskforge.cli", "keys", "revoke", created.json()["id"]],
                env=_env(redis_url=redis_url),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert revoked.returncode == 0, revoked.stderr
            refused = [client.get(f"{r}/v1/queues", headers=key) for r in replicas]
            assert [r.status_code for r in refused] == [401, 401]
            assert all("revoked" in r.json()["detail"] for r in refused)
    finally:
        stop_service(other)
