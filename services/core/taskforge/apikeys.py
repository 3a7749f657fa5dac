"""API keys: generation, hashing and storage in Redis (shared by the gateway and the CLI).

A key is ``tfk_`` followed by 43 URL-safe base64 characters (32 random bytes); it is shown
once, when created. Redis keeps only its SHA-256: a record hash ``tf:apikey:<sha256>`` and an
index hash ``tf:apikeys`` mapping each key id to that digest. A fast hash suffices because the
key carries 256 random bits: nobody can guess it from the digest, unlike a password.

The record and the index live in different cluster slots, so they are written one after the
other (never in one MULTI), in an order that leaves at worst an orphaned index entry, which
every reader skips.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from taskforge.broker.connection import translate_errors
from taskforge.keys import APIKEYS_INDEX, apikey_record_key

log = logging.getLogger(__name__)

Scope = Literal["tasks:write", "tasks:read", "admin"]

#: Every scope a key can carry; ``admin`` implies the others.
SCOPES: tuple[Scope, ...] = get_args(Scope)

#: Prefix of every generated key, so that secret scanners and humans recognise one.
KEY_PREFIX = "tfk_"

#: Random bytes per key (43 URL-safe base64 characters).
KEY_RANDOM_BYTES = 32

#: Hex digits of a key id (random, public: it appears in logs and in the admin routes).
KEY_ID_HEX_DIGITS = 12

#: Name given to the key created from ``TASKFORGE_BOOTSTRAP_API_KEY``.
BOOTSTRAP_NAME = "bootstrap"


def generate_secret() -> str:
    """A new random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which ``secret`` is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(text: str) -> frozenset[Scope]:
    """Parse a comma-separated scope list such as ``tasks:write,tasks:read``.

    Raises:
        ValueError: the list is empty or names an unknown scope.
    """
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(SCOPES))
    if unknown or not names:
        raise ValueError(
            f"invalid scopes {text!r}: use a comma-separated subset of {', '.join(SCOPES)}"
        )
    return frozenset(s for s in SCOPES if s in names)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret. ``None`` limits mean the gateway's defaults."""

    id: str
    name: str
    scopes: frozenset[Scope]
    rate_per_s: float | None
    burst: int | None
    created_ms: int
    revoked: bool = False
    last_used_ms: int | None = None
    #: SHA-256 of the key: needed to update the record, never shown or logged.
    digest: str = field(default="", repr=False)

    def allows(self, scope: Scope) -> bool:
        """Whether the key may use routes of ``scope`` (``admin`` implies every scope)."""
        return "admin" in self.scopes or scope in self.scopes

    @property
    def scopes_text(self) -> str:
        """Scopes as the comma-separated list stored in Redis, in canonical order."""
        return ",".join(s for s in SCOPES if s in self.scopes)

    @classmethod
    def from_fields(cls, digest: str, fields: dict[str, str]) -> ApiKey:
        """Build a key from its record hash."""
        return cls(
            id=fields["id"],
            name=fields.get("name", ""),
            scopes=frozenset(s for s in SCOPES if s in fields.get("scopes", "").split(",")),
            rate_per_s=float(fields["rate_per_s"]) if fields.get("rate_per_s") else None,
            burst=int(fields["burst"]) if fields.get("burst") else None,
            created_ms=int(fields.get("created_ms") or 0),
            revoked=fields.get("revoked") == "1",
            last_used_ms=int(fields["last_used_ms"]) if fields.get("last_used_ms") else None,
            digest=digest,
        )

    def to_fields(self) -> dict[FieldT, EncodableT]:
        """The record hash, without ``id`` (written first, on its own) and ``last_used_ms``."""
        return {
            "name": self.name,
            "scopes": self.scopes_text,
            "rate_per_s": "" if self.rate_per_s is None else repr(self.rate_per_s),
            "burst": "" if self.burst is None else str(self.burst),
            "created_ms": str(self.created_ms),
            "revoked": "1" if self.revoked else "0",
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: the only moment its secret is known."""

    secret: str
    key: ApiKey


class ApiKeyStore:
    """Create, find, list and revoke API keys in Redis (a client with string responses)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(
        self,
        name: str,
        scopes: frozenset[Scope],
        *,
        rate_per_s: float | None = None,
        burst: int | None = None,
        secret: str | None = None,
    ) -> NewKey | None:
        """Store a new key (random unless ``secret`` is given).

        Returns:
            The new key, or ``None`` when a record for ``secret`` already exists.

        Raises:
            ValueError: no scope, or a limit out of range.
            RedisUnavailable: Redis could not be reached.
        """
        if not scopes or (rate_per_s is not None and rate_per_s <= 0):
            raise ValueError("a key needs at least one scope and a positive rate")
        if burst is not None and burst < 1:
            raise ValueError("a key's burst must be at least 1")
        secret = secret or generate_secret()
        digest = hash_secret(secret)
        async with translate_errors("apikeys.create"):
            key_id = await self._claim_id(digest)
            # Claiming the record's id field settles races between replicas bootstrapping the
            # same key: the loser removes its index entry and reports the key as existing.
            if not await self.redis.hsetnx(apikey_record_key(digest), "id", key_id):
                await self.redis.hdel(APIKEYS_INDEX, key_id)
                return None
            key = ApiKey(key_id, name, scopes, rate_per_s, burst, _now_ms(), digest=digest)
            await self.redis.hset(apikey_record_key(digest), mapping=key.to_fields())
        return NewKey(secret, key)

    async def _claim_id(self, digest: str) -> str:
        for _ in range(8):
            key_id = secrets.token_hex(KEY_ID_HEX_DIGITS // 2)
            if await self.redis.hsetnx(APIKEYS_INDEX, key_id, digest):
                return key_id
        raise RuntimeError("could not find a free key id in 8 attempts")  # pragma: no cover

    async def find(self, secret: str) -> ApiKey | None:
        """The stored key for ``secret`` (revoked ones included), or ``None``.

        The record is found by digest; the index entry of its id must hold the same digest,
        compared in constant time, so that an orphaned or half-written record never matches.
        """
        return await self.find_digest(hash_secret(secret))

    async def find_digest(self, digest: str) -> ApiKey | None:
        """Like :meth:`find`, for a key already hashed with :func:`hash_secret`."""
        async with translate_errors("apikeys.find"):
            fields = _strs(await self.redis.hgetall(apikey_record_key(digest)))
            if "id" not in fields or "scopes" not in fields:
                return None
            indexed = await self.redis.hget(APIKEYS_INDEX, fields["id"])
        if indexed is None or not hmac.compare_digest(str(indexed), digest):
            return None
        return ApiKey.from_fields(digest, fields)

    async def get(self, key_id: str) -> ApiKey | None:
        """The key with id ``key_id``, or ``None``."""
        async with translate_errors("apikeys.get"):
            digest = await self.redis.hget(APIKEYS_INDEX, key_id)
            if digest is None:
                return None
            fields = _strs(await self.redis.hgetall(apikey_record_key(str(digest))))
        if fields.get("id") != key_id or "scopes" not in fields:
            return None
        return ApiKey.from_fields(str(digest), fields)

    async def list_keys(self) -> list[ApiKey]:
        """Every stored key, oldest first."""
        async with translate_errors("apikeys.list"):
            index = _strs(await self.redis.hgetall(APIKEYS_INDEX))
            async with self.redis.pipeline(transaction=False) as pipe:
                for digest in index.values():
                    pipe.hgetall(apikey_record_key(digest))
                records = [_strs(r) for r in await pipe.execute()]
        keys = [
            ApiKey.from_fields(digest, fields)
            for (key_id, digest), fields in zip(index.items(), records, strict=True)
            if fields.get("id") == key_id and "scopes" in fields
        ]
        return sorted(keys, key=lambda k: (k.created_ms, k.id))

    async def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke key ``key_id`` (idempotent); ``None`` if there is no such key."""
        key = await self.get(key_id)
        if key is None:
            return None
        async with translate_errors("apikeys.revoke"):
            await self.redis.hset(apikey_record_key(key.digest), "revoked", "1")
        return key

    async def touch(self, key: ApiKey, now_ms: int | None = None) -> None:
        """Record that ``key`` was just used (callers throttle this to once a minute)."""
        async with translate_errors("apikeys.touch"):
            await self.redis.hset(
                apikey_record_key(key.digest), "last_used_ms", str(now_ms or _now_ms())
            )

    async def ensure_bootstrap(self, secret: str) -> ApiKey:
        """Make sure an admin key named ``bootstrap`` exists for ``secret``.

        Idempotent. A revoked bootstrap key stays revoked (someone revoked it on purpose):
        a warning says so, and the operator should unset the setting.
        """
        for attempt in range(5):
            if attempt:
                # Another replica is between writing the record's id and its fields.
                await asyncio.sleep(0.1)
            existing = await self.find(secret)
            if existing is not None:
                if existing.revoked:
                    log.warning(
                        "the bootstrap API key (id %s) is revoked; it stays revoked. "
                        "Unset TASKFORGE_BOOTSTRAP_API_KEY.",
                        existing.id,
                    )
                return existing
            created = await self.create(BOOTSTRAP_NAME, frozenset({"admin"}), secret=secret)
            if created is not None:
                log.info("created the bootstrap API key (id %s)", created.key.id)
                return created.key
        raise RuntimeError("the bootstrap key record is incomplete")  # pragma: no cover


def _strs(mapping: Mapping[Any, Any]) -> dict[str, str]:
    """A hash reply as ``str`` to ``str`` (the client decodes responses)."""
    return {str(k): str(v) for k, v in mapping.items()}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
