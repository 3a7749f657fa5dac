"""Run one fetched task through its handler and decide its outcome.

The worker and the api's ``consume-once`` both call :func:`execute`, so a task gets the same
lifecycle whichever runs it.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
import traceback
from collections.abc import Awaitable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from taskforge import fastjson, tracing
from taskforge.broker.consume import FetchedTask, Outcome
from taskforge.handlers.registry import HandlerSpec, Registry, TaskContext
from taskforge.models import (
    MAX_STORED_JSON_DEPTH,
    BackoffPolicy,
    DeadReason,
    JsonFault,
    is_shallow,
    loads_checked,
)
from taskforge.retry import decide, resolve_max_retries, resolve_policy
from taskforge.settings.handlers import HandlerSettings

#: Longest error message stored on a record; a handler may raise with a huge message.
MAX_ERROR_CHARS = 2000
#: Longest traceback stored on a record.
MAX_TRACEBACK_CHARS = 8000


@dataclass
class ExecutionEnv:
    """Everything :func:`execute` needs besides the task."""

    registry: Registry
    settings: HandlerSettings
    http: httpx.AsyncClient
    threads: Executor | None = None


def storable(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates (undecodable file names, subprocess output)
    would make the Redis client refuse the whole batch of outcomes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _dead(task: FetchedTask, reason: DeadReason, error: str, trace: str = "") -> Outcome:
    return Outcome(
        task.id,
        "dead",
        storable(error[:MAX_ERROR_CHARS]),
        trace,
        dead_reason=reason,
        attempt=task.attempts,
    )


#: What decoding a stored field can raise: bad JSON (ValueError), a missing field (None:
#: TypeError), nesting past the parser's stack (RecursionError), a policy that fails its model.
_UNREADABLE = (ValueError, TypeError, RecursionError, ValidationError)


#: Types orjson would encode differently from ``json.dumps(default=str)``: left to ``default``.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _result_json(value: Any, limit_bytes: int) -> str:
    if value is None:
        return "null"
    try:
        # The fast path: no ``default`` (anything orjson cannot encode natively takes the
        # stdlib path), and a "null" in the output may stand for a NaN, which the stdlib path
        # refuses: only results without both, and shallow enough, are stored from here.
        encoded = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        return _result_json_checked(value, limit_bytes)
    if b"null" in encoded or not is_shallow(encoded, MAX_STORED_JSON_DEPTH):
        return _result_json_checked(value, limit_bytes)
    if len(encoded) > limit_bytes:
        return _truncated(len(encoded))
    return encoded.decode()


def _result_json_checked(value: Any, limit_bytes: int) -> str:
    try:
        encoded = json.dumps(value, separators=(",", ":"), default=_plain, allow_nan=False)
    except Exception as exc:  # default=str runs the result's own __str__; nesting can recurse
        return _unserialisable(exc)
    if len(encoded.encode()) > limit_bytes:
        return _truncated(len(encoded.encode()))
    try:
        # Store only what the status API can show again: the rule request bodies follow, with
        # their fast path (most results need no walk).
        loads_checked(encoded.encode(), MAX_STORED_JSON_DEPTH)
    except JsonFault as exc:
        return _unserialisable(exc)
    return encoded


def _plain(value: Any) -> Any:
    """What the stdlib path stores for a value JSON has no type for: an enum member's value (as
    orjson on the fast path does), else its text."""
    return value.value if isinstance(value, Enum) else str(value)


def _truncated(size_bytes: int) -> str:
    # Keep the record bounded: say how big the result was instead of storing it.
    return json.dumps({"result_truncated": True, "size_bytes": size_bytes})


def _unserialisable(exc: BaseException) -> str:
    return json.dumps({"unserialisable_result": str(exc)[:200]})


class AttemptTimedOut(Exception):
    """The handler ran past its timeout (as opposed to raising TimeoutError itself)."""


async def _within(awaitable: Awaitable[Any], timeout_s: float) -> Any:
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await awaitable
    except TimeoutError:
        if deadline.expired():
            raise AttemptTimedOut(f"timed out after {timeout_s}s") from None
        raise


async def _call(
    spec: HandlerSpec, payload: Any, ctx: TaskContext, env: ExecutionEnv, timeout_s: float
) -> Any:
    if spec.is_async:
        return await _within(spec.func(payload, ctx), timeout_s)
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    def run() -> Any:
        loop.call_soon_threadsafe(started.set)
        return spec.func(payload, ctx)

    if tracing.enabled():
        # The executor's thread would not see the attempt's span (run_in_executor copies no
        # context): the handler's log lines and its own spans would lose the task's trace.
        future = loop.run_in_executor(env.threads, contextvars.copy_context().run, run)
    else:
        future = loop.run_in_executor(env.threads, run)
    try:
        # The timeout starts when a thread picks the task up: waiting for a free thread (one may
        # be held by an earlier handler that ignored its timeout) must not spend the attempt.
        await started.wait()
    except asyncio.CancelledError:
        future.cancel()
        raise
    return await _within(future, timeout_s)


def precheck(task: FetchedTask, env: ExecutionEnv) -> tuple[HandlerSpec | None, Outcome | None]:
    """The handler for ``task``, or the outcome that ends it without running it."""
    if task.unreadable is not None:
        return None, _dead(task, DeadReason.UNREADABLE_RECORD, task.unreadable)
    spec = env.registry.get(task.type)
    if spec is None:
        return None, _dead(task, DeadReason.UNKNOWN_TASK_TYPE, f"no handler for {task.type!r}")
    policy_max = resolve_max_retries(task.max_retries, spec.max_retries, env.settings.max_retries)
    # attempts was incremented by the fetch: more than max_retries + 1 only happens when
    # earlier attempts were abandoned by workers that died, so this is a poison task.
    if task.attempts > policy_max + 1:
        return spec, _dead(
            task, DeadReason.ABANDONED, f"abandoned by dead workers {task.attempts - 1} times"
        )
    return spec, None


async def execute(task: FetchedTask, env: ExecutionEnv) -> Outcome:
    """Run ``task`` once and return its outcome; never raises but for cancellation."""
    spec, early = precheck(task, env)
    if early is not None:
        return early
    if spec is None:  # precheck returns a handler or an outcome; this narrows for mypy
        raise RuntimeError(f"no handler and no outcome for {task.id}")
    settings = env.settings
    timeout_s = task.timeout_s or spec.timeout_s or settings.task_timeout_s
    traceparent = task.traceparent
    if tracing.enabled():
        # What the handler passes on (a webhook's traceparent) names its attempt.
        traceparent = tracing.current_traceparent() or traceparent
    ctx = TaskContext(
        task.id, task.queue, task.type, task.attempts, traceparent, settings, env.http
    )
    try:
        payload = fastjson.loads(task.payload_json)
    except _UNREADABLE as exc:
        # Running it again would fail the same way: dead-letter it now, with its own reason.
        return _dead(task, DeadReason.UNREADABLE_RECORD, f"stored payload unreadable: {exc}")
    timed_out = False
    try:
        result = await _call(spec, payload, ctx, env, timeout_s)
    except AttemptTimedOut as exc:
        timed_out = True
        error: BaseException = TimeoutError(str(exc))
    except Exception as exc:  # any handler error is this attempt's failure, never the worker's
        error = exc
    else:
        result_json = _result_json(result, settings.max_result_bytes)
        return Outcome(task.id, "succeeded", result_json, attempt=task.attempts)
    return _failure(task, spec, env, error, timed_out)


def _failure(
    task: FetchedTask, spec: HandlerSpec, env: ExecutionEnv, error: BaseException, timed_out: bool
) -> Outcome:
    settings = env.settings
    message = storable(f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS])
    trace = storable("".join(traceback.format_exception(error))[-MAX_TRACEBACK_CHARS:])
    try:
        # Read only when an attempt failed: the success path pays nothing for it.
        task_backoff = (
            BackoffPolicy.model_validate_json(task.backoff_json) if task.backoff_json else None
        )
    except _UNREADABLE as exc:
        note = f"stored backoff unreadable ({exc}); the attempt failed with {message}"
        return _dead(task, DeadReason.UNREADABLE_RECORD, note, trace)
    policy = resolve_policy(
        task_max_retries=task.max_retries,
        task_backoff=task_backoff,
        handler_max_retries=spec.max_retries,
        handler_backoff=spec.backoff,
        default_max_retries=settings.max_retries,
        default_backoff=settings.default_backoff,
        retry_on=spec.retry_on,
        give_up_on=spec.give_up_on,
    )
    decision = decide(policy, task.attempts, error, random.random(), timed_out=timed_out)
    if decision.reason is not None:
        return _dead(task, decision.reason, message, trace)
    delay_ms = int((decision.delay_s or 0.0) * 1000)
    return Outcome(task.id, "retry", message, trace, delay_ms=delay_ms, attempt=task.attempts)
