"""What one gateway process holds: Redis, the key store, the authenticator, the api client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from taskforge.apikeys import ApiKeyStore
from taskforge.broker.connection import Broker
from taskforge.broker.mux import RedisMux
from taskforge.errors import ConfigurationError, RedisUnavailable
from taskforge.settings import GatewaySettings
from taskforge_gateway.auth import KEY_CACHE_TTL_S, Authenticator
from taskforge_gateway.proxy import upstream_client
from taskforge_gateway.upstream import Upstream

log = logging.getLogger(__name__)

#: Shortest accepted ``TASKFORGE_BOOTSTRAP_API_KEY`` (about 140 bits as base64).
MIN_BOOTSTRAP_KEY_CHARS = 24

#: Seconds between bootstrap attempts while Redis is unavailable at start-up.
BOOTSTRAP_RETRY_S = 2.0


def check_settings(settings: GatewaySettings) -> None:
    """Refuse settings the gateway cannot run safely with.

    Raises:
        ConfigurationError: the bootstrap key is too short.
    """
    bootstrap = settings.bootstrap_api_key
    if bootstrap is not None and len(bootstrap.get_secret_value()) < MIN_BOOTSTRAP_KEY_CHARS:
        raise ConfigurationError(
            f"TASKFORGE_BOOTSTRAP_API_KEY must be at least {MIN_BOOTSTRAP_KEY_CHARS} characters; "
            'generate one with: python -c \'import secrets; print("tfk_" + '
            "secrets.token_urlsafe(32))'"
        )


class Gateway:
    """The gateway's connections; :meth:`start` and :meth:`close` run in the app lifespan."""

    def __init__(self, settings: GatewaySettings, *, key_cache_ttl_s: float = KEY_CACHE_TTL_S):
        check_settings(settings)
        self.settings = settings
        #: No I/O yet: the pool connects on first use.
        self.broker = Broker.from_settings(settings)
        self.store = ApiKeyStore(self.broker.redis)
        if self.broker.mux is None:
            raise RuntimeError("the gateway needs the broker's multiplexed connection")
        self.mux: RedisMux = self.broker.mux
        self.auth = Authenticator(
            self.store,
            self.broker.scripts,
            self.mux,
            failures_per_window=settings.auth_failures_per_window,
            failure_window_s=settings.auth_failure_window_s,
            cache_ttl_s=key_cache_ttl_s,
        )
        self._http: Upstream | None = None
        self._bootstrap_task: asyncio.Task[None] | None = None
        #: The merged OpenAPI document, once the api served its own.
        self.openapi: dict[str, Any] | None = None

    @property
    def http(self) -> Upstream:
        """The pooled client to the api."""
        if self._http is None:
            raise RuntimeError("the gateway is not started (run the app's lifespan)")
        return self._http

    async def start(self) -> None:
        """Open the api client and make sure the bootstrap key exists."""
        self._http = upstream_client(self.settings)
        if self.settings.bootstrap_api_key is None:
            return
        try:
            await self.bootstrap()
        except RedisUnavailable as exc:
            # Start anyway (readiness reports Redis) and keep trying in the background.
            log.warning("bootstrap key not ensured yet: %s", exc)
            self._bootstrap_task = asyncio.create_task(self._bootstrap_until_done())

    async def bootstrap(self) -> None:
        """Ensure the bootstrap key (no-op without one)."""
        if self.settings.bootstrap_api_key is not None:
            await self.store.ensure_bootstrap(self.settings.bootstrap_api_key.get_secret_value())

    async def _bootstrap_until_done(self) -> None:
        while True:
            await asyncio.sleep(BOOTSTRAP_RETRY_S)
            try:
                await self.bootstrap()
            except RedisUnavailable as exc:
                log.warning("bootstrap key not ensured yet: %s", exc)
            else:
                return

    async def close(self) -> None:
        """Close every connection."""
        if self._bootstrap_task is not None:
            self._bootstrap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._bootstrap_task
        if self._http is not None:
            await self._http.close()
        await self.broker.close()
