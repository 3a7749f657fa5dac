"""Real service processes for integration tests: workers and schedulers, as deployed.

Each process runs ``python -m taskforge_worker.main`` or ``python -m taskforge_scheduler.main``
(what the console scripts and the images run) with a clean environment: every ``TASKFORGE_*``
variable of the test run is dropped, then only what the test asks for is set. Output goes to a
log file that failures quote.

Typical use::

    with ServiceGroup(log_dir=tmp_path) as services:
        worker = services.worker(redis_url, queue, env=tf_env(lease_s=2))
        await worker.wait_ready()
        ...
        await wait_until(lambda: worker.poll() is not None, 30, message="worker still runs",
                         processes=services.processes)

Leaving the ``with`` block SIGKILLs whatever still runs, so a failing test never leaks a process.
"""

from __future__ import annotations

import asyncio
import http.client
import inspect
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port

#: The repository root: put on PYTHONPATH so that ``tests.support.task_handlers`` imports.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Handler module every worker started here imports (TASKFORGE_HANDLERS).
HANDLERS_MODULE = "tests.support.task_handlers"

#: Prefix of the variables a service reads; all of the test run's own are dropped.
ENV_PREFIX = "TASKFORGE_"

#: Most characters of one process log quoted in a failure message.
LOG_TAIL_CHARS = 4000

#: Seconds a SIGKILLed process gets to be reaped.
REAP_TIMEOUT_S = 10.0

_serial = itertools.count(1)

Predicate = Callable[[], Any]


def tf_env(**settings: object) -> dict[str, str]:
    """``tf_env(lease_s=2)`` -> ``{"TASKFORGE_LEASE_S": "2"}``: settings by field name."""
    return {f"{ENV_PREFIX}{name.upper()}": str(value) for name, value in settings.items()}


def read_lines(path: Path | str) -> list[str]:
    """Lines a handler appended to ``path`` (empty when the file does not exist yet)."""
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []


def log_text(path: Path) -> str:
    """Everything a process wrote to its log file ``path`` so far (empty before it exists)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def terminate(proc: subprocess.Popen[bytes] | None, grace_s: float = REAP_TIMEOUT_S) -> None:
    """SIGTERM ``proc`` if it runs, SIGKILL it if it outlives ``grace_s``; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(REAP_TIMEOUT_S)


class ServiceProcess:
    """One running service process, its metrics port and its log."""

    def __init__(
        self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.metrics_port = int(self.env[f"{ENV_PREFIX}METRICS_PORT"])
        with log_path.open("ab") as log:
            # The child keeps its own copy of the descriptor.
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    # -- process control -----------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The process id (part of a worker's id: ``<host>-<pid>-<random>``)."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal), else None."""
        return self.proc.returncode

    def poll(self) -> int | None:
        """Exit status if the process has exited, else None."""
        return self.proc.poll()

    def send(self, sig: signal.Signals | int) -> None:
        """Send ``sig`` to the process if it still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the process (if it runs) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(REAP_TIMEOUT_S)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; returns its status.

        Raises:
            AssertionError: still running after ``timeout`` seconds (the message has the log).
        """
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout:g}s\n{self.describe()}"
            ) from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    # -- observation ---------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return log_text(self.log_path)

    def describe(self) -> str:
        """Name, pid, status and the tail of the log, for failure messages."""
        status = self.proc.poll()
        state = "running" if status is None else f"exited with {status}"
        tail = self.log_text()[-LOG_TAIL_CHARS:]
        return f"--- {self.name} pid {self.pid} ({state}), log {self.log_path}:\n{tail}"

    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, str] | None:
        """GET ``path`` on the metrics port: (status, body), or None when nothing answers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except OSError:
            return None
        finally:
            conn.close()

    def status(self, path: str) -> int | None:
        """HTTP status of ``path`` on the metrics port, or None when nothing answers."""
        reply = self.get(path)
        return None if reply is None else reply[0]

    def metric(self, sample: str, **labels: str) -> float | None:
        """Value of one sample on ``/metrics`` (e.g. ``taskforge_queue_depth``), or None."""
        reply = self.get("/metrics")
        if reply is None or reply[0] != 200:
            return None
        for family in text_string_to_metric_families(reply[1]):
            for s in family.samples:
                if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    async def wait_ready(self, timeout_s: float = 20.0) -> None:
        """Wait until ``/readyz`` answers 200 (the service reached Redis).

        Raises:
            AssertionError: it did not, or the process exited first.
        """

        def ready() -> bool:
            if self.poll() is not None:
                raise AssertionError(f"{self.name} exited before it was ready\n{self.describe()}")
            return self.status("/readyz") == 200

        await wait_until(
            ready, timeout_s, message=f"{self.name} never became ready", processes=[self]
        )


def _clean_env(
    redis_url: str, metrics_port: int, overrides: Mapping[str, str] | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    python_path = [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(python_path),
            "PYTHONUNBUFFERED": "1",
            f"{ENV_PREFIX}REDIS_URL": redis_url,
            f"{ENV_PREFIX}ENV": "dev",
            f"{ENV_PREFIX}METRICS_HOST": "127.0.0.1",
            f"{ENV_PREFIX}METRICS_PORT": str(metrics_port),
            f"{ENV_PREFIX}LOG_FORMAT": "text",
        }
    )
    env.update(overrides or {})
    return env


def _log_path(name: str, log_dir: Path | str | None) -> Path:
    directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="tf-procs-"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}-{next(_serial)}.log"


def start_worker(
    redis_url: str,
    queues: str | Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    log_dir: Path | str | None = None,
) -> ServiceProcess:
    """Start a worker on ``queues`` (priority order) with the test handlers loaded.

    Args:
        redis_url: the Redis to use.
        queues: one queue name, a comma list, or a sequence of names.
        env: further variables (``tf_env(...)`` builds them); they override the defaults.
        args: command-line arguments, e.g. ``["--burst"]``.
        log_dir: where the log file goes (a new temporary directory by default).
    """
    names = queues if isinstance(queues, str) else ",".join(queues)
    defaults = {f"{ENV_PREFIX}QUEUES": names, f"{ENV_PREFIX}HANDLERS": HANDLERS_MODULE}
    return start_service("worker", redis_url, {**defaults, **(env or {})}, args, log_dir)


def start_scheduler(
    redis_url: str,
    *,
    env: Mapping[str, str] | None = None,
    log_dir: Path | str | None = None,
) -> ServiceProcess:
    """Start a scheduler; its queue registry is re-read every 0.5 s unless ``env`` says else."""
    defaults = {f"{ENV_PREFIX}QUEUE_REFRESH_S": "0.5"}
    return start_service("scheduler", redis_url, {**defaults, **(env or {})}, log_dir=log_dir)


def start_service(
    service: str,
    redis_url: str,
    env: Mapping[str, str],
    args: Sequence[str] = (),
    log_dir: Path | str | None = None,
) -> ServiceProcess:
    """Start ``python -m taskforge_<service>.main`` (worker, scheduler, api or gateway).

    ``env`` is laid over the clean environment (see the module docstring); the api and the
    gateway need at least their ``PORT`` and ``INTERNAL_TOKEN`` there.
    """
    full_env = _clean_env(redis_url, free_port(), env)
    command = [sys.executable, "-m", f"taskforge_{service}.main", *args]
    return ServiceProcess(service, command, full_env, _log_path(service, log_dir))


class ServiceGroup:
    """Processes started for one test, all SIGKILLed when the ``with`` block ends."""

    def __init__(self, log_dir: Path | str | None = None) -> None:
        self.log_dir = log_dir
        self.processes: list[ServiceProcess] = []

    def worker(
        self,
        redis_url: str,
        queues: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> ServiceProcess:
        """Start a worker (see :func:`start_worker`) owned by this group."""
        proc = start_worker(redis_url, queues, env=env, args=args, log_dir=self.log_dir)
        self.processes.append(proc)
        return proc

    def scheduler(self, redis_url: str, *, env: Mapping[str, str] | None = None) -> ServiceProcess:
        """Start a scheduler (see :func:`start_scheduler`) owned by this group."""
        proc = start_scheduler(redis_url, env=env, log_dir=self.log_dir)
        self.processes.append(proc)
        return proc

    def kill_all(self) -> None:
        """SIGKILL and reap every process of the group."""
        for proc in self.processes:
            proc.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill_all()


def describe_all(processes: Iterable[ServiceProcess]) -> str:
    """Every process's status and log tail, for failure messages."""
    return "\n".join(p.describe() for p in processes)


async def wait_until(
    predicate: Predicate | Callable[[], Awaitable[Any]],
    timeout_s: float,
    interval_s: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
    processes: Iterable[ServiceProcess] = (),
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that.

    Raises:
        AssertionError: ``timeout_s`` passed; the message says what was awaited and, when
            ``processes`` are given, quotes their logs. ``message`` may be a callable, to
            describe the state reached at the time of failure.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            logs = describe_all(processes)
            raise AssertionError(f"after {timeout_s:g}s: {text}" + (f"\n{logs}" if logs else ""))
        await asyncio.sleep(interval_s)
