"""API key authentication: the presented key, failed-attempt throttling, a key cache.

A verified key is cached in-process for at most :data:`KEY_CACHE_TTL_S`, which spares its
lookup (two reads and a parse), not its revocation check: every request of a cached key reads
the key's ``revoked`` flag in the same Redis round trip as its address's failure count and its
rate limit (:meth:`Authenticator.admit`). A key revoked anywhere, on another replica or with
the CLI, is therefore refused from the next request on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.exceptions import NoScriptError
from starlette.datastructures import Headers

from taskforge.apikeys import ApiKey, ApiKeyStore, hash_secret
from taskforge.broker.connection import translate_errors
from taskforge.broker.mux import RedisMux
from taskforge.keys import apikey_record_key, authfail_key
from taskforge.ratelimit import (
    RateDecision,
    check_rate,
    rate_command,
    rate_decision,
)
from taskforge.scripts import Scripts
from taskforge_gateway.observability import AUTH_FAILURES
from taskforge_gateway.problems import GatewayProblem

#: Seconds a verified key's record is kept in-process (its revocation is checked every request).
KEY_CACHE_TTL_S = 5.0

#: Seconds between two ``last_used_ms`` writes of one key (per replica).
LAST_USED_INTERVAL_S = 60.0

#: Presented keys outside these lengths cannot be valid and are refused without a lookup.
MIN_KEY_CHARS = 24
MAX_KEY_CHARS = 256

#: Cached keys above which expired entries are swept on insertion.
_CACHE_SWEEP_SIZE = 10_000


def presented_key(headers: Headers) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or, failing that, ``X-API-Key``."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key", "").strip() or None


#: A key's rate and burst, given the key (its own, or the gateway's defaults).
LimitsOf = Callable[[ApiKey], tuple[float, int]]


def _unauthorized(reason: str, detail: str) -> GatewayProblem:
    AUTH_FAILURES.labels(reason).inc()
    challenge = "Bearer" if reason == "missing" else 'Bearer error="invalid_token"'
    return GatewayProblem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


class Authenticator:
    """Checks presented keys against the store, counting failures per client address."""

    def __init__(
        self,
        store: ApiKeyStore,
        scripts: Scripts,
        mux: RedisMux,
        *,
        failures_per_window: int,
        failure_window_s: int,
        cache_ttl_s: float = KEY_CACHE_TTL_S,
    ) -> None:
        self.store = store
        self.scripts = scripts
        #: The connection of the one-round-trip admission (:meth:`_admit_cached`).
        self.mux = mux
        self.failures_per_window = failures_per_window
        self.failure_window_s = failure_window_s
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._touched: dict[str, float] = {}

    async def admit(
        self, secret: str | None, client: str, limits: LimitsOf
    ) -> tuple[ApiKey, RateDecision]:
        """The valid, unrevoked key ``secret``, and its rate decision (one request spent).

        A cached key costs one round trip (:meth:`_admit_cached`); any other goes through the
        throttle check, the lookup and the rate limit in turn. Either way a throttled address
        is refused first, then an invalid or revoked key.

        Raises:
            GatewayProblem: 429 (throttled address) or 401 (missing, invalid, revoked key).
            RedisUnavailable: Redis could not be reached.
        """
        cached = self._cached(secret)
        if cached is not None:
            decision = await self._admit_cached(cached, client, limits)
            if decision is not None:
                return cached, decision
            # Revoked since it was cached: the full path refuses it and counts the failure.
            self.forget(cached.id)
        await self.check_throttle(client)
        key = await self.authenticate(secret, client)
        rate_per_s, burst = limits(key)
        return key, await check_rate(self.scripts, key.id, rate_per_s=rate_per_s, burst=burst)

    def _cached(self, secret: str | None) -> ApiKey | None:
        if secret is None or not MIN_KEY_CHARS <= len(secret) <= MAX_KEY_CHARS:
            return None
        entry = self._cache.get(hash_secret(secret))
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    async def _admit_cached(
        self, key: ApiKey, client: str, limits: LimitsOf
    ) -> RateDecision | None:
        """One round trip: the address's failures, the key's revoked flag, its rate limit.

        Returns ``None`` when the key was revoked (or its record removed). The request is
        counted against the key's rate even then, or when the address turns out throttled:
        a revoked key's bucket no longer matters, and a throttled address presenting a valid
        key costs that key one request.

        Raises:
            GatewayProblem: 429, the address is throttled.
            RedisUnavailable: Redis could not be reached.
        """
        rate_per_s, burst = limits(key)
        for _ in range(2):
            async with translate_errors("admit"):
                failures, revoked, reply = await self.mux.execute(
                    ("GET", authfail_key(client)),
                    ("HGET", apikey_record_key(key.digest), "revoked"),
                    rate_command(self.scripts, key.id, rate_per_s=rate_per_s, burst=burst),
                )
            if not isinstance(reply, NoScriptError):
                break
            async with translate_errors("admit"):  # Redis restarted, or its scripts flushed
                await self.scripts.load("ratelimit")
        # An error reply that means "Redis is not there right now" (LOADING after a restart,
        # OOM, READONLY) is a 503 like a lost connection, not a 500.
        async with translate_errors("admit", traced=False):
            for outcome in (failures, revoked, reply):
                if isinstance(outcome, Exception):
                    raise outcome
        if failures is not None and int(failures) >= self.failures_per_window:
            await self.check_throttle(client)  # raises, with the window's remaining time
        if revoked != "0":
            return None
        return rate_decision(reply, burst)

    async def check_throttle(self, client: str) -> None:
        """Refuse a client address that failed too often in the current window.

        Raises:
            GatewayProblem: 429 with ``Retry-After`` (the window's remaining seconds).
            RedisUnavailable: Redis could not be reached.
        """
        redis = self.store.redis
        async with translate_errors("authfail"):
            count = await redis.get(authfail_key(client))
            if count is None or int(count) < self.failures_per_window:
                return
            ttl_s = await redis.ttl(authfail_key(client))
        AUTH_FAILURES.labels("throttled").inc()
        raise GatewayProblem(
            429,
            "auth-throttled",
            "too many failed authentications from this address; retry later",
            headers={"Retry-After": str(max(1, int(ttl_s)))},
        )

    async def authenticate(self, secret: str | None, client: str) -> ApiKey:
        """The valid, unrevoked key ``secret``.

        Raises:
            GatewayProblem: 401 (missing, invalid or revoked key).
            RedisUnavailable: Redis could not be reached.
        """
        if secret is None:
            # Nothing was guessed, so nothing is counted against the address.
            raise _unauthorized("missing", "an API key is required (Authorization: Bearer)")
        key = await self._verify(secret) if MIN_KEY_CHARS <= len(secret) <= MAX_KEY_CHARS else None
        if key is None or key.revoked:
            await self._record_failure(client)
            if key is None:
                raise _unauthorized("invalid", "the API key is not valid")
            raise _unauthorized("revoked", "the API key was revoked")
        return key

    async def _verify(self, secret: str) -> ApiKey | None:
        digest = hash_secret(secret)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = await self.store.find_digest(digest)
        if key is not None and not key.revoked:
            if len(self._cache) >= _CACHE_SWEEP_SIZE:
                self._cache = {d: e for d, e in self._cache.items() if e[1] > now}
            self._cache[digest] = (key, now + self.cache_ttl_s)
        return key

    async def _record_failure(self, client: str) -> None:
        key = authfail_key(client)
        async with translate_errors("authfail"), self.store.redis.pipeline() as pipe:
            # One MULTI: the counter never exists without its expiry.
            pipe.incr(key)
            pipe.expire(key, self.failure_window_s, nx=True)
            await pipe.execute()

    def forget(self, key_id: str) -> None:
        """Drop ``key_id`` from the cache (after revoking it here)."""
        self._cache = {d: e for d, e in self._cache.items() if e[0].id != key_id}

    async def touch(self, key: ApiKey) -> None:
        """Write the key's ``last_used_ms``, at most once per :data:`LAST_USED_INTERVAL_S`."""
        now = time.monotonic()
        last = self._touched.get(key.id)
        if last is not None and now - last < LAST_USED_INTERVAL_S:
            return
        self._touched[key.id] = now
        await self.store.touch(key)
