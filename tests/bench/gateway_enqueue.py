"""Single enqueue through gateway -> api, against the floor, with ``wrk``.

The local stack (:class:`scripts.devstack.Stack`: redis with AOF, api, gateway, an idle worker
and the scheduler) starts on free ports with rate limits out of the way, and so does
:mod:`tests.bench.floor_app` on the stack's Redis. For each connection count, the same ``wrk``
script (``POST /v1/tasks``, one task per request, a queue no worker reads) drives the gateway
and then the floor for the same duration; the figure to track is the gateway's requests/s over
the floor's. ``wrk`` (Debian package ``wrk``; ``make bench`` installs it) rather than a Python
client, which would measure itself. Load generator and servers share this machine's cores.

Any non-2xx answer or socket error fails the bench.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack import Stack, free_port
from tests.bench.common import REPO, BenchError
from tests.bench.report import Results, Target

WRK_SCRIPT = """wrk.method = "POST"
wrk.body = '{"type": "echo", "queue": "bench-gateway", "payload": {"n": 1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%%.0f duration_us=%%.0f p50_us=%%.0f p99_us=%%.0f status=%%.0f " ..
    "connect=%%.0f read=%%.0f write=%%.0f timeout=%%.0f\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""
_RESULT = re.compile(r"^RESULT (.*)$", re.MULTILINE)
_ERRORS = ("status", "connect", "read", "write", "timeout")


@dataclass(frozen=True, slots=True)
class Wrk:
    """One wrk run's figures."""

    rps: float
    p50_ms: float
    p99_ms: float


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> Wrk:
    """``wrk`` against ``url``.

    Raises:
        BenchError: wrk failed, or saw a non-2xx answer or a socket error.
    """
    argv = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds:g}s",
            "-s", str(script), url]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    found = _RESULT.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise BenchError(f"wrk {url} failed ({done.returncode}): {done.stderr or done.stdout}")
    fields = {k: float(v) for k, v in (pair.split("=") for pair in found.group(1).split())}
    errors = {k: int(fields[k]) for k in _ERRORS if fields[k]}
    if errors:
        raise BenchError(f"wrk {url} at {connections} connections: errors {errors}")
    return Wrk(
        rps=fields["requests"] / (fields["duration_us"] / 1e6),
        p50_ms=fields["p50_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
    )


def _wait_answering(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"floor app exited with status {proc.returncode}")
        try:
            request = urllib.request.Request(url, data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 202:
                    return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"floor app at {url} not answering after {timeout_s:.0f}s")


def _start_floor(redis_url: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [sys.executable, "-m", "tests.bench.floor_app", "--port", str(port),
            "--redis-url", redis_url]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/tasks"
    try:
        _wait_answering(url, proc, 30)
    except BenchError:
        proc.kill()
        proc.wait()
        raise
    return url, proc


def _stack_redis_url(stack: Stack) -> str:
    argv = stack.procs["redis"].args
    assert isinstance(argv, list)
    return f"redis://127.0.0.1:{argv[argv.index('--port') + 1]!s}/0"


def _record(results: Results, connections: int, gateway: Wrk, floor: Wrk) -> None:
    c = connections
    at16 = c == 16
    for name, w in (("gateway", gateway), ("floor", floor)):
        rps_target = Target(">=", 2_000) if at16 and name == "gateway" else None
        p99_target = Target("<=", 20) if at16 and name == "gateway" else None
        who = "gateway->api" if name == "gateway" else "floor (bare ASGI + XADD)"
        results.add(f"http.{name}.c{c}.rps", w.rps, f"HTTP enqueue {who}, {c} conn", "req/s",
                    rps_target)  # fmt: skip
        results.add(f"http.{name}.c{c}.p50", w.p50_ms, f"  p50, {c} conn", "ms",
                    show=name == "gateway")  # fmt: skip
        results.add(f"http.{name}.c{c}.p99", w.p99_ms, f"  p99, {c} conn", "ms", p99_target,
                    show=name == "gateway")  # fmt: skip
    results.add(f"http.ratio.c{c}", gateway.rps / floor.rps, f"  gateway / floor, {c} conn",
                "x", Target(">=", 1 / 3) if at16 else None)  # fmt: skip


def run_section(results: Results, runs: int, connections: list[int], seconds: float) -> None:
    """Start the stack and the floor once; ``runs`` rounds of every connection count."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is required: apt-get install wrk (make bench does it)")
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(gateway_port=free_port(), data_dir=Path(tmp), quiet=True,
                      extra_env={"TASKFORGE_DEFAULT_RATE_PER_S": "1000000",
                                 "TASKFORGE_DEFAULT_BURST": "1000000",
                                 "TASKFORGE_LOG_LEVEL": "WARNING"})  # fmt: skip
        floor = None
        try:
            stack.start(timeout_s=60)
            floor_url, floor = _start_floor(_stack_redis_url(stack))
            script = Path(tmp) / "post.lua"
            script.write_text(WRK_SCRIPT % stack.admin_key)
            for _ in range(runs):
                for c in connections:
                    gateway = run_wrk(f"{stack.url}/v1/tasks", script, c, seconds)
                    _record(results, c, gateway, run_wrk(floor_url, script, c, seconds))
        finally:
            if floor is not None:
                floor.terminate()
                floor.wait(30)
            stack.stop()
