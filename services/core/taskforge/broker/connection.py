"""The Redis client, its registered scripts, and the translation of driver errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from taskforge.errors import RedisUnavailable
from taskforge.keys import CONSUMER_GROUP, QUEUES_REGISTRY, QueueKeys
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


@asynccontextmanager
async def translate_errors(what: str) -> AsyncIterator[None]:
    """Re-raise connection-level driver errors as :class:`RedisUnavailable`."""
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
    _known_queues: set[str] = field(default_factory=set)

    @classmethod
    def from_url(cls, url: str, *, password: str | None = None, **options: Any) -> Broker:
        """Build a broker on a new connection pool to ``url``."""
        client = Redis.from_url(
            url, password=password, decode_responses=True, health_check_interval=30, **options
        )
        return cls(client, Scripts.register(client))

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Broker:
        """Build a broker from a service's settings."""
        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        return cls.from_url(
            settings.redis_url,
            password=password,
            socket_timeout=settings.redis_socket_timeout_s,
            socket_connect_timeout=settings.redis_socket_timeout_s,
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose()

    async def ping(self) -> bool:
        """True when Redis answers, for readiness probes."""
        try:
            return bool(await self.redis.ping())
        except CONNECTION_ERRORS:
            return False

    async def ensure_queue(self, queue: str) -> None:
        """Register ``queue`` and create its stream and consumer group if they are missing.

        Done once per process and queue, before the first enqueue or fetch, so that KEDA's lag
        metric is defined before any worker exists.
        """
        if queue in self._known_queues:
            return
        stream = QueueKeys(queue).stream
        async with translate_errors("ensure_queue"):
            await self.redis.sadd(QUEUES_REGISTRY, queue)
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._known_queues.add(queue)

    def forget_queues(self) -> None:
        """Make the next :meth:`ensure_queue` talk to Redis again (after a reconnect)."""
        self._known_queues.clear()

    async def queues(self) -> list[str]:
        """Every queue that ever received a task, sorted."""
        async with translate_errors("queues"):
            members = await self.redis.smembers(QUEUES_REGISTRY)
            return sorted(str(m) for m in members)
