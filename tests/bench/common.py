"""What the benchmark sections share: worker processes, their cost, Redis access, percentiles.

Workers are real ``taskforge-worker`` processes (``python -m taskforge_worker.main``) started
from the repository root with a clean ``TASKFORGE_*`` environment, leases and heartbeats at
their defaults. Each is reaped with ``wait4`` so that its own CPU time and peak RSS are known
exactly, not mixed with other children's.
"""

from __future__ import annotations

import bisect
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

REPO = Path(__file__).resolve().parents[2]
#: The module that registers the benchmark's one-round-trip handler in a worker.
HANDLERS_MODULE = "tests.bench.handlers"
#: Where that handler finds its Redis; not a ``TASKFORGE_*`` name (worker settings refuse
#: unknown ones).
URL_ENV = "BENCH_HANDLER_REDIS_URL"
#: The handler's task type, its counter, and the prefix of the keys holding start times.
TASK_TYPE = "bench.roundtrip"
COUNTER_KEY = "bench:count"
START_PREFIX = "bench:start:"


class BenchError(RuntimeError):
    """A measurement could not be taken (a process failed, a drain did not complete, ...)."""


def service_env(redis_url: str, **settings: str) -> dict[str, str]:
    """This process's environment without ``TASKFORGE_*``, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    env.update(
        TASKFORGE_REDIS_URL=redis_url,
        TASKFORGE_ENV="dev",
        TASKFORGE_LOG_LEVEL="WARNING",
        TASKFORGE_METRICS_HOST="127.0.0.1",
        TASKFORGE_METRICS_PORT="0",
    )
    env.update({f"TASKFORGE_{name.upper()}": value for name, value in settings.items()})
    env[URL_ENV] = redis_url
    return env


def spawn_worker(
    redis_url: str, queue: str, concurrency: int, *, burst: bool
) -> subprocess.Popen[bytes]:
    """Start one worker process on ``queue`` with the benchmark's handler loaded."""
    env = service_env(
        redis_url, queues=queue, concurrency=str(concurrency), handlers=HANDLERS_MODULE
    )
    argv = [sys.executable, "-m", "taskforge_worker.main", *(["--burst"] if burst else [])]
    return subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.DEVNULL)


@dataclass(frozen=True, slots=True)
class ProcessCost:
    """What one finished child process used, and when it used its CPU."""

    cpu_s: float
    max_rss_bytes: int
    #: (Unix time in ms, CPU seconds used so far), sampled while it ran, the exit last.
    cpu_samples: tuple[tuple[float, float], ...] = ()

    def cpu_between(self, start_ms: float, end_ms: float) -> float:
        """CPU seconds used between two instants, interpolated between samples."""
        return self._cpu_at(end_ms) - self._cpu_at(start_ms)

    def _cpu_at(self, at_ms: float) -> float:
        samples = self.cpu_samples
        i = bisect.bisect_left(samples, (at_ms, -1.0))
        if i == 0:
            return samples[0][1] if samples else 0.0
        if i == len(samples):
            return samples[-1][1]
        (t0, c0), (t1, c1) = samples[i - 1], samples[i]
        return c0 + (c1 - c0) * (at_ms - t0) / (t1 - t0) if t1 > t0 else c1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (0 once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm_bytes(pid: int) -> int:
    """The process's peak RSS so far (VmHWM), 0 once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class _Watch:
    """Samples one running child's CPU and peak RSS until it is reaped."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.peak = 0
        self.samples: list[tuple[float, float]] = []
        self.cost: ProcessCost | None = None

    def poll(self, what: str) -> None:
        now_ms = time.time() * 1000
        cpu = cpu_seconds(self.proc.pid)
        self.peak = max(self.peak, _vm_hwm_bytes(self.proc.pid))
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if not pid:
            self.samples.append((now_ms, cpu))
            return
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        if self.proc.returncode != 0:
            raise BenchError(f"{what} (pid {self.proc.pid}) exited with {self.proc.returncode}")
        total = usage.ru_utime + usage.ru_stime
        self.samples.append((now_ms, total))
        self.cost = ProcessCost(total, self.peak, tuple(self.samples))


def reap_all(
    procs: Sequence[subprocess.Popen[bytes]], timeout_s: float, what: str
) -> list[ProcessCost]:
    """Wait for every process to exit; each one's own CPU time and peak RSS.

    Both are sampled from /proc every 20 ms while the process runs. The peak RSS is VmHWM:
    ``wait4``'s ``ru_maxrss`` would also count the bench's own memory, which the child
    inherited at fork and which Linux keeps in the maximum across exec.

    Raises:
        BenchError: one did not exit in time (all are killed) or exited non-zero.
    """
    deadline = time.monotonic() + timeout_s
    watches = [_Watch(proc) for proc in procs]
    try:
        while pending := [w for w in watches if w.cost is None]:
            for watch in pending:
                watch.poll(what)
            if time.monotonic() > deadline:
                raise BenchError(f"{what} still running after {timeout_s:.0f}s")
            time.sleep(0.02)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    return [w.cost for w in watches if w.cost is not None]


def reap(proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> ProcessCost:
    """:func:`reap_all` of one process."""
    return reap_all([proc], timeout_s, what)[0]


def stop(proc: subprocess.Popen[bytes], what: str, timeout_s: float = 30.0) -> ProcessCost:
    """SIGTERM a long-running child and reap it (a graceful exit must be status 0)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return reap(proc, timeout_s, what)


def sync_client(redis_url: str) -> Redis:
    """A plain client for the bench's own reads (decoded strings)."""
    return Redis.from_url(redis_url, decode_responses=True)


def get_int(client: Redis, key: str) -> int:
    """An integer stored at ``key`` (0 when missing)."""
    return int(client.get(key) or 0)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank: a value that was actually observed."""
    if not values:
        raise BenchError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
