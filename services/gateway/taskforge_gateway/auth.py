"""API key authentication: the presented key, failed-attempt throttling, a short-lived cache.

Verified keys are cached in-process for at most :data:`KEY_CACHE_TTL_S`, so a key revoked on
another replica (or with the CLI) stops working within that time; the replica that revokes
through ``DELETE /v1/keys/{id}`` drops its own entry at once.
"""

from __future__ import annotations

import time

from starlette.datastructures import Headers

from taskforge.apikeys import ApiKey, ApiKeyStore, hash_secret
from taskforge.broker.connection import translate_errors
from taskforge.keys import authfail_key
from taskforge_gateway.observability import AUTH_FAILURES
from taskforge_gateway.problems import GatewayProblem

#: Seconds a verified key is trusted without asking Redis (the revocation delay).
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


def _unauthorized(reason: str, detail: str) -> GatewayProblem:
    AUTH_FAILURES.labels(reason).inc()
    challenge = "Bearer" if reason == "missing" else 'Bearer error="invalid_token"'
    return GatewayProblem(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


class Authenticator:
    """Checks presented keys against the store, counting failures per client address."""

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        failures_per_window: int,
        failure_window_s: int,
        cache_ttl_s: float = KEY_CACHE_TTL_S,
    ) -> None:
        self.store = store
        self.failures_per_window = failures_per_window
        self.failure_window_s = failure_window_s
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._touched: dict[str, float] = {}

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
