"""The Redis ceiling: ``redis-benchmark`` on the primitives the engine's scripts use.

Run against the bench's own redis-server in the same run as the other sections, so that the
engine's figures can be read against what this Redis on this machine does at best: XADD (a
queued task), HSET (a task record), ZADD (a lease or a schedule), EVALSHA of a script making one
call (the cost of going through Lua), each one request per round trip and 16 pipelined
(``-P 16``), 50 clients (redis-benchmark's default).
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

from tests.bench.common import BenchError, sync_client
from tests.bench.report import Results

TINY_SCRIPT = "return redis.call('INCR', KEYS[1])"
COMMANDS = {
    "xadd": ["XADD", "bench:ceiling:stream", "*", "payload", "x"],
    "hset": ["HSET", "bench:ceiling:task:__rand_int__", "state", "running", "started_ms", "1"],
    "zadd": ["ZADD", "bench:ceiling:leases", "__rand_int__", "task:__rand_int__"],
}


def redis_benchmark(port: int, requests: int, pipeline: int, command: list[str]) -> float:
    """Requests/s of ``command`` as redis-benchmark reports it.

    Raises:
        BenchError: redis-benchmark is missing, failed, or printed no figure.
    """
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise BenchError("redis-benchmark is missing: apt-get install redis-tools (make bench)")
    argv = [binary, "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-r", "100000",
            "-P", str(pipeline), "--csv", *command]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if done.returncode != 0 or not rows or not rows[0].get("rps"):
        raise BenchError(f"redis-benchmark {' '.join(command)} failed: {done.stderr.strip()}")
    return float(rows[0]["rps"])


def run_section(results: Results, url: str, port: int, requests: int) -> None:
    """One run of every primitive, unpipelined and pipelined."""
    client = sync_client(url)
    try:
        sha = client.script_load(TINY_SCRIPT)
        commands = {**COMMANDS, "evalsha": ["EVALSHA", sha, "1", "bench:ceiling:counter"]}
        for name, command in commands.items():
            for pipeline in (1, 16):
                # Pipelined runs get more requests so that they last long enough to measure.
                rate = redis_benchmark(port, requests * min(pipeline, 4), pipeline, command)
                results.add(f"ceiling.{name}.P{pipeline}", rate,
                            f"Redis ceiling: {name.upper()}, -P {pipeline}", "req/s")  # fmt: skip
        client.flushall()
    finally:
        client.close()
