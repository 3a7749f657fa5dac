"""Built-in handlers for demos, tests and smoke checks: ``echo``, ``sleep``, ``fail``.

The ``http``, ``email`` and ``sms`` handlers live in modules of their own and are imported here
so that loading the built-ins registers all of them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskforge.handlers import email, http, sms
from taskforge.handlers.registry import TaskContext, handler
from taskforge.retry import GiveUp

__all__ = ["email", "http", "sms"]


class DemoFailure(Exception):
    """What the ``fail`` handler raises."""


@handler("echo")
async def echo(payload: Any, ctx: TaskContext) -> Any:
    """Return the payload unchanged."""
    return payload


@handler("sleep")
async def sleep(payload: Any, ctx: TaskContext) -> dict[str, float]:
    """Sleep ``payload["seconds"]`` (default 1) and report it."""
    seconds = float(payload.get("seconds", 1.0)) if isinstance(payload, dict) else 1.0
    await asyncio.sleep(seconds)
    return {"slept_s": seconds}


@handler("fail")
async def fail(payload: Any, ctx: TaskContext) -> dict[str, int]:
    """Fail the first ``payload["times"]`` attempts (all when absent), then succeed.

    ``payload["permanent"]`` makes the failure non-retryable.
    """
    options = payload if isinstance(payload, dict) else {}
    message = str(options.get("message", "failing on purpose"))
    times = options.get("times")
    if times is None or ctx.attempt <= int(times):
        if options.get("permanent"):
            raise GiveUp(message)
        raise DemoFailure(f"{message} (attempt {ctx.attempt})")
    return {"succeeded_on_attempt": ctx.attempt}
