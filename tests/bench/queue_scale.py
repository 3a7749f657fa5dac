"""Queue-count benchmark: what 2,000 queues cost the api and an idle scheduler.

Run with ``uv run python -m tests.bench.queue_scale`` (``--help`` for options). It starts a
private redis-server, an api and a scheduler as real processes, enqueues batches of tasks that
each go to as many distinct queues as there are tasks (the abuse the queue limit exists for),
and reports:

- ``GET /v1/queues`` and ``GET /metrics`` latency on the api (median of several requests);
- the size and series count of the scheduler's Prometheus ``/metrics``;
- the scheduler's CPU while idle (nothing due, nothing leased), as a share of one core.

``--api-env``/``--scheduler-env`` pass settings (``TASKFORGE_MAX_QUEUES=5000`` lets the api
accept this many queues once the limit exists).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from taskforge.settings.base import ENV_PREFIX
from tests.bench.common import cpu_seconds
from tests.support.ports import free_port
from tests.support.processes import ServiceProcess, start_scheduler, wait_until
from tests.support.redis_server import RedisServer

_TOKEN = "bench-internal-token"


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def _start_api(redis_url: str, port: int, extra: dict[str, str], log_dir: Path) -> ServiceProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(
        {
            f"{ENV_PREFIX}REDIS_URL": redis_url,
            f"{ENV_PREFIX}ENV": "dev",
            f"{ENV_PREFIX}PORT": str(port),
            f"{ENV_PREFIX}METRICS_PORT": str(free_port()),
            f"{ENV_PREFIX}METRICS_HOST": "127.0.0.1",
            f"{ENV_PREFIX}INTERNAL_TOKEN": _TOKEN,
            f"{ENV_PREFIX}LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    command = [sys.executable, "-m", "taskforge_api.main"]
    return ServiceProcess("api", command, env, log_dir / "api.log")


async def _timed_get(client: httpx.AsyncClient, path: str, repeat: int) -> tuple[float, int]:
    """Median latency in ms of ``repeat`` GETs, and the size of the last body."""
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        size = len(response.content)
    return statistics.median(times), size


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def _seed(client: httpx.AsyncClient, batches: int, per_batch: int) -> None:
    for b in range(batches):
        tasks = [{"type": "echo", "queue": f"q{b}-{i}"} for i in range(per_batch)]
        response = await client.post("/v1/tasks/batch", json={"tasks": tasks}, timeout=120)
        print(f"batch {b}: {response.status_code}")


def _scheduler_metrics(scheduler: ServiceProcess) -> tuple[int, int]:
    reply = scheduler.get("/metrics", timeout_s=30)
    assert reply is not None and reply[0] == 200, reply
    series = [line for line in reply[1].splitlines() if line and not line.startswith("#")]
    return len(reply[1].encode()), len(series)


async def run(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="tf-queue-scale-"))
    with RedisServer(dir=log_dir / "redis") as redis:
        port = free_port()
        api = _start_api(redis.url, port, _env_pairs(args.api_env), log_dir)
        sched_env = _env_pairs(args.scheduler_env)
        scheduler = start_scheduler(redis.url, env=sched_env, log_dir=log_dir)
        with api, scheduler:
            headers = {"x-taskforge-internal-token": _TOKEN}
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as client:
                await wait_until(lambda: _answers(base), 60, processes=[api])
                await scheduler.wait_ready()
                await _seed(client, args.batches, args.per_batch)
                for path in args.paths:
                    median_ms, size = await _timed_get(client, path, args.repeat)
                    print(f"GET {path}: median {median_ms:.1f} ms, {size} bytes")
            await asyncio.sleep(6)  # a gauge pass (every 5 s by default) over the new queues
            size, series = _scheduler_metrics(scheduler)
            print(f"scheduler /metrics: {size} bytes, {series} series")
            assert redis.proc is not None
            redis_pid = redis.proc.pid
            before, redis_before = cpu_seconds(scheduler.pid), cpu_seconds(redis_pid)
            await asyncio.sleep(args.cpu_window_s)
            used = cpu_seconds(scheduler.pid) - before
            print(f"scheduler idle CPU: {100 * used / args.cpu_window_s:.1f}% of one core")
            used = cpu_seconds(redis_pid) - redis_before
            print(f"redis-server CPU meanwhile: {100 * used / args.cpu_window_s:.1f}% of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--per-batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cpu-window-s", type=float, default=20.0)
    parser.add_argument("--paths", nargs="+", default=["/v1/queues", "/metrics"])
    parser.add_argument("--api-env", nargs="*", default=[])
    parser.add_argument("--scheduler-env", nargs="*", default=[])
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
