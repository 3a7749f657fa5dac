"""The processes of a chaos run: Redis with AOF, api, gateway, workers and one scheduler.

Every process is a real one, started as deployed (``python -m taskforge_<service>.main``). The
api and the gateway keep their ports across restarts, so the producers and the gateway always
dial the same address, as they would a Kubernetes Service; a killed one is restarted at once,
as a kubelet would.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from scripts.devstack import new_api_key
from tests.chaos.common import EXEC_DIR_ENV, HANDLERS_MODULE
from tests.support.ports import free_port
from tests.support.processes import ServiceGroup, ServiceProcess, start_service, tf_env
from tests.support.redis_server import RedisServer

FsyncMode = Literal["always", "everysec"]

#: Tasks one worker runs at once: at most this many runs are cut short when it is killed.
CONCURRENCY = 16
#: Short leases and ticks: a killed worker's tasks come back within seconds.
WORKER_SETTINGS = tf_env(
    lease_s=2, heartbeat_interval_s=0.5, concurrency=CONCURRENCY, block_ms=200, shutdown_grace_s=3,
    handlers=HANDLERS_MODULE, queue_refresh_s=0.5,
)  # fmt: skip
SCHEDULER_SETTINGS = tf_env(tick_s=0.2)


@dataclass
class ChaosCluster:
    """The running processes; ``with`` stops them all, whatever happened."""

    root: Path
    queue: str
    fsync: FsyncMode
    workers_wanted: int = 3
    admin_key: str = field(default_factory=new_api_key)
    workers: list[ServiceProcess] = field(default_factory=list)
    #: Workers sent SIGTERM, left to finish by themselves.
    draining: list[ServiceProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.exec_dir = self.root / "executions"
        self.exec_dir.mkdir(parents=True, exist_ok=True)
        aof = ["--appendonly", "yes", "--appendfsync", self.fsync]
        self.redis = RedisServer(dir=self.root / "redis", extra_args=aof)
        self.group = ServiceGroup(log_dir=self.root / "logs")
        self.api_port, self.gateway_port = free_port(), free_port()
        self.token = secrets.token_urlsafe(32)
        self.api: ServiceProcess | None = None
        self.gateway: ServiceProcess | None = None
        self.scheduler: ServiceProcess | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL (the only address producers use)."""
        return f"http://127.0.0.1:{self.gateway_port}"

    async def start(self) -> None:
        """Start every process and wait until the gateway and the workers are ready."""
        self.redis.start()
        self.api = self._start("api")
        self.gateway = self._start("gateway")
        self.scheduler = self._start("scheduler")
        self.workers = [self._start_worker() for _ in range(self.workers_wanted)]
        for proc in (self.api, self.gateway, *self.workers):
            await proc.wait_ready(60)

    # -- what the controller does ------------------------------------------------------

    def ready_workers(self) -> list[int]:
        """Indexes of the workers answering ``/readyz`` (past start-up: SIGTERM is handled)."""
        return [i for i, worker in enumerate(self.workers) if worker.status("/readyz") == 200]

    def kill_worker(self, index: int, graceful: bool) -> None:
        """SIGKILL (or SIGTERM) worker ``index`` and start its replacement at once."""
        victim = self.workers[index]
        if graceful:
            victim.send(signal.SIGTERM)
            self.draining.append(victim)
        else:
            victim.kill()
        self.workers[index] = self._start_worker()

    def kill_service(self, name: Literal["api", "gateway", "scheduler"]) -> None:
        """SIGKILL the api, the gateway or the scheduler and start it again on the same port."""
        victim = getattr(self, name)
        assert isinstance(victim, ServiceProcess)
        victim.kill()
        setattr(self, name, self._start(name))

    async def restart_redis(self) -> None:
        """SIGKILL Redis and start it again on its AOF (off the event loop: it blocks)."""
        await asyncio.to_thread(self.redis.restart, True)

    def graceful_exit_codes(self) -> list[int | None]:
        """Exit statuses of the workers sent SIGTERM (None: still running)."""
        return [proc.poll() for proc in self.draining]

    # -- internals ----------------------------------------------------------------------

    def _start_worker(self) -> ServiceProcess:
        env = {**WORKER_SETTINGS, **tf_env(queues=self.queue), EXEC_DIR_ENV: str(self.exec_dir)}
        return self._adopt(start_service("worker", self.redis.url, env, log_dir=self.group.log_dir))

    def _start(self, name: str) -> ServiceProcess:
        env: dict[str, str] = {}
        if name == "scheduler":
            env = SCHEDULER_SETTINGS
        elif name == "api":
            env = tf_env(host="127.0.0.1", port=self.api_port, internal_token=self.token)
        elif name == "gateway":
            env = tf_env(
                host="127.0.0.1", port=self.gateway_port, internal_token=self.token,
                api_url=f"http://127.0.0.1:{self.api_port}", bootstrap_api_key=self.admin_key,
                # The run measures loss, not rate limits: the producers must never be refused.
                default_rate_per_s=1_000_000, default_burst=1_000_000,
            )  # fmt: skip
        return self._adopt(start_service(name, self.redis.url, env, log_dir=self.group.log_dir))

    def _adopt(self, proc: ServiceProcess) -> ServiceProcess:
        self.group.processes.append(proc)
        return proc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.group.kill_all()
        self.redis.close()
