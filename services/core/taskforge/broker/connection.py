"""The Redis client, its registered scripts, and the translation of driver errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from taskforge import tracing
from taskforge.broker.mux import RedisMux
from taskforge.broker.packing import use_fast_packing
from taskforge.errors import RedisUnavailable
from taskforge.keys import CONSUMER_GROUP, QUEUES_REGISTRY, QueueKeys, QueuePolicy
from taskforge.scripts import Scripts
from taskforge.settings.base import CoreSettings

#: Driver errors that mean "Redis is not there right now", as opposed to a bug or bad data.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    redis_errors.ReadOnlyError,
    # Redis at maxmemory with noeviction refuses writes until memory frees up: wait it out.
    redis_errors.OutOfMemoryError,
    OSError,
)


#: Longest wait for a script's reply when the settings give no socket timeout.
DEFAULT_MUX_TIMEOUT_S = 30.0


@asynccontextmanager
async def translate_errors(what: str, *, traced: bool = True) -> AsyncIterator[None]:
    """Re-raise connection-level driver errors as :class:`RedisUnavailable`.

    Every Redis operation of the broker runs inside one of these, so it is also where an
    operation becomes a CLIENT span (``redis <what>``) when a request or a task is traced;
    ``traced=False`` for a block that only translates replies already received.
    """
    with tracing.redis_operation(what) if traced else tracing.activated(None):
        try:
            yield
        except CONNECTION_ERRORS as exc:
            raise RedisUnavailable(f"{what}: Redis unavailable: {exc}") from exc


@dataclass
class Broker:
    """A Redis client with TaskForge's scripts registered on it."""

    redis: Redis
    scripts: Scripts
    group: str = CONSUMER_GROUP
    #: The queue limit and name pattern that enqueue enforces.
    policy: QueuePolicy = field(default_factory=QueuePolicy)
    #: The multiplexed connection script calls use (None: they go through ``redis``).
    mux: RedisMux | None = None
    _known_queues: set[str] = field(default_factory=set)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        policy: QueuePolicy | None = None,
        **options: Any,
    ) -> Broker:
        """Build a broker on a new connection pool to ``url``."""
        # backslashreplace: bytes that are not UTF-8 (written by something other than TaskForge)
        # must reach parse_record, which shows a placeholder, instead of failing the whole read.
        client = Redis.from_url(
            url,
            password=password,
            decode_responses=True,
            encoding_errors="backslashreplace",
            health_check_interval=30,
            **options,
        )
        use_fast_packing(client)
        timeout_s = options.get("socket_timeout") or DEFAULT_MUX_TIMEOUT_S
        mux = RedisMux(url, password=password, timeout_s=timeout_s)
        return cls(client, Scripts.register(client, mux), policy=policy or QueuePolicy(), mux=mux)

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Broker:
        """Build a broker from a service's settings."""
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        return cls.from_url(
            settings.redis_url,
            password=password,
            policy=settings.queue_policy,
            socket_timeout=settings.redis_socket_timeout_s,
            socket_connect_timeout=settings.redis_socket_timeout_s,
        )

    async def close(self) -> None:
        """Close the connection pool and the multiplexed connection."""
        if self.mux is not None:
            await self.mux.close()
        await self.redis.aclose()

    async def ping(self) -> bool:
        """True when Redis answers, for readiness probes."""
        try:
            return bool(await self.redis.ping())
        except CONNECTION_ERRORS:
            return False

    async def ensure_queue(self, queue: str) -> None:
        """Create the stream and consumer group of ``queue`` if they are missing.

        Done once per process and queue before the first fetch. It does not register the
        queue: only an enqueue does, within the queue limit (see ``broker.registry``).
        """
        if queue in self._known_queues:
            return
        async with translate_errors("ensure_queue"):
            await self.create_groups([queue])
        self._known_queues.add(queue)

    async def create_groups(self, queues: list[str]) -> None:
        """Create the streams and consumer groups of ``queues`` (existing ones are kept)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.xgroup_create(QueueKeys(queue).stream, self.group, id="0", mkstream=True)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply

    def forget_queues(self) -> None:
        """Make the next :meth:`ensure_queue` talk to Redis again (after a reconnect)."""
        self._known_queues.clear()

    async def queues(self) -> list[str]:
        """Every live queue (registered by an enqueue, not reaped since), sorted by name."""
        async with translate_errors("queues"):
            members = await self.redis.smembers(QUEUES_REGISTRY)
            return sorted(str(m) for m in members)

    async def has_queue(self, queue: str) -> bool:
        """True when ``queue`` is live (in the registry)."""
        async with translate_errors("queues"):
            return bool(await self.redis.sismember(QUEUES_REGISTRY, queue))
