"""Reconnect backoff: exponential with full jitter, capped."""

from __future__ import annotations

import asyncio
import random

from taskforge.retry import compute_backoff


class Backoff:
    """Sleeps longer after each consecutive failure, until :meth:`reset`."""

    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0

    async def sleep(self) -> None:
        """Sleep for the next delay."""
        self.failures += 1
        delay_s = compute_backoff(self.failures, self.base_s, self.cap_s, random.random())
        await asyncio.sleep(max(delay_s, self.base_s / 2))
