"""``taskforge-gateway`` as a real process: environment settings, sockets, SIGTERM, exit codes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.unit.gateway.support import INTERNAL_TOKEN
from tests.unit.gateway.upstream import Upstream, echoed_headers

COMMAND = [sys.executable, "-m", "taskforge_gateway.main"]


def _env(**values: str) -> dict[str, str]:
    """The test runner's environment without any TASKFORGE_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    env.update({f"TASKFORGE_{k.upper()}": v for k, v in values.items()})
    return env


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    metrics_url: str
    secret: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def gateway_process(redis_url: str, upstream: Upstream, tmp_path: Path) -> Iterator[Running]:
    port, metrics_port = free_port(), free_port()
    secret = "bootstrap-" + secrets.token_hex(16)
    env = _env(
        redis_url=redis_url,
        api_url=upstream.url,
        internal_token=INTERNAL_TOKEN,
        port=str(port),
        metrics_port=str(metrics_port),
        metrics_host="127.0.0.1",
        bootstrap_api_key=secret,
        max_body_bytes="1000",
    )
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(COMMAND, env=env, stdout=log, stderr=subprocess.STDOUT)
    running = Running(
        proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", secret, log_path
    )
    try:
        _wait_healthy(running)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_healthy(running: Running) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            pytest.fail(f"the gateway exited with {running.proc.returncode}:\n{running.log()}")
        try:
            if httpx.get(f"{running.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the gateway did not become healthy:\n{running.log()}")


def test_real_process_serves_limits_reports_and_stops_on_sigterm(gateway_process: Running) -> None:
    running = gateway_process
    auth = {"Authorization": f"Bearer {running.secret}"}
    with httpx.Client(base_url=running.url, timeout=10) as client:
        ok = client.get("/v1/queues?a=1", headers={**auth, "X-Request-Id": "proc-test-1"})
        chunked = client.post(
            "/v1/tasks",
            content=iter([b"[" + b"1," * 400, b"1," * 400, b"1]"]),
            headers={**auth, "Content-Type": "application/json"},
        )
        unauthorized = client.get("/v1/queues")
        ready = client.get("/readyz")

    assert ok.status_code == 200, ok.text
    assert ok.headers["x-request-id"] == "proc-test-1"
    assert ok.headers["ratelimit-limit"] == "100"
    assert "server" not in ok.headers
    sent = echoed_headers(ok.json())
    assert sent["x-taskforge-internal-token"] == INTERNAL_TOKEN
    assert "authorization" not in sent
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert chunked.status_code == 413
    assert chunked.headers["content-type"] == "application/problem+json"
    assert unauthorized.status_code == 401
    assert ready.json() == {"status": "ok"}

    metrics = httpx.get(f"{running.metrics_url}/metrics", timeout=5).text
    assert (
        'taskforge_gateway_requests_total{method="GET",route="/v1/queues",status_class="2xx"}'
        in (metrics)
    )
    assert "taskforge_gateway_auth_failures_total" in metrics
    assert httpx.get(f"{running.metrics_url}/readyz", timeout=5).status_code == 200

    running.proc.send_signal(signal.SIGTERM)
    # uvicorn drains, then re-raises the signal so that the parent sees why it stopped.
    assert running.proc.wait(timeout=20) in (0, -signal.SIGTERM)
    log = running.log()
    assert "Application shutdown complete." in log
    assert running.secret not in log
    access = [json.loads(line) for line in log.splitlines() if '"taskforge_gateway.access"' in line]
    (mine,) = [line for line in access if line.get("request_id") == "proc-test-1"]
    assert mine["route"] == "/v1/queues" and mine["status"] == 200
    assert mine["key_id"] and mine["service"] == "gateway"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"internal_token": INTERNAL_TOKEN}, "TASKFORGE_API_URL"),
        ({"api_url": "http://127.0.0.1:1", "internal_token": INTERNAL_TOKEN, "bogus": "1"},
         "TASKFORGE_BOGUS"),
        ({"api_url": "http://127.0.0.1:1", "internal_token": INTERNAL_TOKEN,
          "bootstrap_api_key": "too-short"}, "at least 24 characters"),
        ({"api_url": "http://127.0.0.1:1", "internal_token": "changeme"},
         "TASKFORGE_INTERNAL_TOKEN"),
    ],
)  # fmt: skip
def test_configuration_errors_exit_2(redis_url: str, values: dict[str, str], message: str) -> None:
    result = subprocess.run(
        COMMAND,
        env=_env(redis_url=redis_url, port=str(free_port()), **values),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "too-short" not in result.stderr
