"""Per-key rate limits: the GCRA decision of ``lua/ratelimit.lua`` and its response headers.

GCRA (generic cell rate algorithm) is a token bucket stored as one timestamp: a key may send
``burst`` requests at once, then ``rate_per_s`` requests per second. The decision is taken in
one Lua script on Redis's clock, so every gateway replica shares one bucket per key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from taskforge.broker.connection import translate_errors
from taskforge.keys import ratelimit_key
from taskforge.scripts import Scripts

#: Microseconds per second: the script reports durations in µs.
_US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one rate-limit check."""

    allowed: bool
    #: The burst: requests a full bucket admits at once (``RateLimit-Limit``).
    limit: int
    #: Requests that would still be admitted right now (``RateLimit-Remaining``).
    remaining: int
    #: Whole seconds until the bucket is full again (``RateLimit-Reset``).
    reset_s: int
    #: Whole seconds to wait before retrying a refused request (0 when admitted).
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` headers (IETF draft), plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


async def check_rate(
    scripts: Scripts, key_id: str, *, rate_per_s: float, burst: int, cost: int = 1
) -> RateDecision:
    """Spend ``cost`` requests of ``key_id``'s bucket if it holds them.

    Args:
        scripts: the registered scripts of a broker.
        key_id: the API key's id (never the key itself).
        rate_per_s: sustained requests per second (> 0).
        burst: requests admitted at once from a full bucket (>= 1).
        cost: requests this call counts for (1 <= cost <= burst).

    Raises:
        ValueError: an argument is out of range.
        RedisUnavailable: Redis could not be reached.
    """
    args = _script_args(rate_per_s, burst, cost)
    async with translate_errors("ratelimit"):
        reply = await scripts.run("ratelimit", [ratelimit_key(key_id)], args)
    return rate_decision(reply, burst)


def rate_command(
    scripts: Scripts, key_id: str, *, rate_per_s: float, burst: int, cost: int = 1
) -> tuple[Any, ...]:
    """:func:`check_rate`'s script call as a bare ``EVALSHA`` command, to send with others.

    Read its reply with :func:`rate_decision`; a ``NOSCRIPT`` reply asks for
    ``scripts.load("ratelimit")`` and a second send (``Scripts.command``). redis-py would add a
    ``SCRIPT EXISTS`` round trip to every pipeline holding a registered script.

    Raises:
        ValueError: an argument is out of range.
    """
    args = _script_args(rate_per_s, burst, cost)
    return scripts.command("ratelimit", [ratelimit_key(key_id)], args)


def rate_decision(reply: list[Any], burst: int) -> RateDecision:
    """The decision in the script's reply, for a bucket of ``burst``."""
    allowed, remaining, retry_after_us, reset_us = reply
    return RateDecision(
        allowed=bool(allowed),
        limit=burst,
        remaining=int(remaining),
        reset_s=math.ceil(int(reset_us) / _US_PER_S),
        retry_after_s=max(1, math.ceil(int(retry_after_us) / _US_PER_S)) if not allowed else 0,
    )


def _script_args(rate_per_s: float, burst: int, cost: int) -> list[Any]:
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)) or burst < 1 or not 1 <= cost <= burst:
        raise ValueError(f"invalid rate limit: rate {rate_per_s}/s, burst {burst}, cost {cost}")
    return [repr(float(rate_per_s)), burst, cost]
