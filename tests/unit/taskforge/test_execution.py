"""Tests for taskforge.execution: one attempt of one task, from handler lookup to outcome."""

from __future__ import annotations

import asyncio
import enum
import json
import math
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from taskforge.broker.consume import FetchedTask, Outcome
from taskforge.execution import (
    MAX_ERROR_CHARS,
    MAX_TRACEBACK_CHARS,
    ExecutionEnv,
    execute,
    precheck,
)
from taskforge.handlers.registry import Registry, TaskContext
from taskforge.models import MAX_STORED_JSON_DEPTH, BackoffPolicy
from taskforge.retry import GiveUp, Retry
from taskforge.settings.handlers import HandlerSettings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def make_settings(**overrides: Any) -> HandlerSettings:
    fields: dict[str, Any] = {
        "redis_url": "redis://unused",
        "env": "dev",
        "max_retries": 2,
        "backoff_kind": "exponential",
        "backoff_base_s": 1.0,
        "backoff_cap_s": 300.0,
        "backoff_jitter": True,
        "task_timeout_s": 5.0,
        "max_result_bytes": 1000,
    }
    return HandlerSettings(**{**fields, **overrides})


def make_task(
    type_: str = "t.ok",
    *,
    attempts: int = 1,
    payload: Any = None,
    max_retries: int | None = None,
    backoff: BackoffPolicy | None = None,
    timeout_s: float | None = None,
    queue: str = "q-exec",
) -> FetchedTask:
    return FetchedTask(
        id=f"{queue}.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3",
        queue=queue,
        type=type_,
        payload_json=json.dumps({} if payload is None else payload),
        attempts=attempts,
        max_retries=max_retries,
        backoff_json="" if backoff is None else backoff.model_dump_json(),
        timeout_s=timeout_s,
        traceparent=TRACEPARENT,
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = httpx.AsyncClient()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def env(registry: Registry, http: httpx.AsyncClient) -> ExecutionEnv:
    return ExecutionEnv(registry=registry, settings=make_settings(), http=http)


def no_jitter_env(env: ExecutionEnv, **overrides: Any) -> ExecutionEnv:
    return ExecutionEnv(
        env.registry, make_settings(backoff_jitter=False, **overrides), env.http, env.threads
    )


# -- success ------------------------------------------------------------------------------


async def test_success_returns_compact_result_json(registry: Registry, env: ExecutionEnv) -> None:
    seen: list[tuple[Any, TaskContext]] = []

    @registry.handler("t.ok")
    async def ok(payload: Any, ctx: TaskContext) -> Any:
        seen.append((payload, ctx))
        return {"sent": True, "ids": [1, 2], "to": payload["to"]}

    task = make_task(payload={"to": "a@b.c"}, attempts=2)
    outcome = await execute(task, env)
    expected = '{"sent":true,"ids":[1,2],"to":"a@b.c"}'
    assert outcome == Outcome(task.id, "succeeded", expected, attempt=task.attempts)
    ((payload, ctx),) = seen
    assert payload == {"to": "a@b.c"}
    assert (ctx.task_id, ctx.queue, ctx.type, ctx.attempt) == (task.id, task.queue, "t.ok", 2)
    assert ctx.traceparent == TRACEPARENT
    assert ctx.settings is env.settings
    assert ctx.http is env.http


NAN_REFUSED = "Out of range float values are not JSON compliant"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (None, "null"),
        (0, "0"),
        ("é", '"é"'),  # stored as UTF-8 (orjson), not \\u escapes
        ([], "[]"),
        ({"set": {1}}, '{"set":"{1}"}'),  # what orjson cannot encode takes the stdlib path
        ({"n": None, "big": 2**70}, '{"n":null,"big":1180591620717411303424}'),
        # a NaN is encoded as null by orjson: the stdlib path refuses it
        ({"nan": float("nan")}, json.dumps({"unserialisable_result": NAN_REFUSED})),
    ],
)
async def test_result_forms(registry: Registry, env: ExecutionEnv, value: Any, stored: str) -> None:
    registry.handler("t.ok")(lambda payload, ctx: value)
    assert (await execute(make_task(), env)).detail == stored


async def test_sync_handler_runs_in_a_thread(registry: Registry, env: ExecutionEnv) -> None:
    threads: list[threading.Thread] = []

    @registry.handler("t.sync")
    def sync(payload: Any, ctx: TaskContext) -> str:
        threads.append(threading.current_thread())
        return "done"

    outcome = await execute(make_task("t.sync"), env)
    assert outcome.kind == "succeeded"
    assert outcome.detail == '"done"'
    assert threads
    assert threads[0] is not threading.main_thread()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tf-test-pool")
    try:
        yield executor
    finally:
        executor.shutdown(wait=True)


async def test_sync_handler_uses_the_given_executor(
    registry: Registry, env: ExecutionEnv, pool: ThreadPoolExecutor
) -> None:
    @registry.handler("t.sync")
    def sync(payload: Any, ctx: TaskContext) -> str:
        return threading.current_thread().name

    env.threads = pool
    outcome = await execute(make_task("t.sync"), env)
    assert json.loads(outcome.detail).startswith("tf-test-pool")


# -- dead before running ------------------------------------------------------------------


async def test_unknown_type_is_dead(env: ExecutionEnv) -> None:
    task = make_task("t.nobody")
    outcome = await execute(task, env)
    assert (outcome.kind, outcome.dead_reason) == ("dead", "unknown_task_type")
    assert "t.nobody" in outcome.detail


@pytest.mark.parametrize(
    ("attempts", "task_max", "handler_max", "abandoned"),
    [
        (3, None, None, False),  # settings max_retries=2: attempt 3 is the last one
        (4, None, None, True),
        (10, None, None, True),
        (2, 0, None, True),  # task max_retries wins
        (1, 0, None, False),
        (6, None, 5, False),  # handler max_retries wins over settings
        (7, None, 5, True),
        (2, 0, 5, True),  # task over handler
    ],
)
async def test_abandoned_poison_task_is_dead_without_running(
    registry: Registry,
    env: ExecutionEnv,
    attempts: int,
    task_max: int | None,
    handler_max: int | None,
    abandoned: bool,
) -> None:
    calls: list[int] = []

    @registry.handler("t.ok", max_retries=handler_max)
    async def ok(payload: Any, ctx: TaskContext) -> None:
        calls.append(ctx.attempt)

    task = make_task(attempts=attempts, max_retries=task_max)
    outcome = await execute(task, env)
    if abandoned:
        assert (outcome.kind, outcome.dead_reason) == ("dead", "abandoned")
        assert str(attempts - 1) in outcome.detail
        assert calls == []
    else:
        assert outcome.kind == "succeeded"
        assert calls == [attempts]


def test_precheck_returns_handler_or_outcome(registry: Registry, env: ExecutionEnv) -> None:
    registry.handler("t.ok")(lambda payload, ctx: None)
    spec, early = precheck(make_task(), env)
    assert spec is registry.get("t.ok")
    assert early is None
    spec, early = precheck(make_task("t.other"), env)
    assert spec is None
    assert early is not None
    assert early.kind == "dead"


# -- failures -----------------------------------------------------------------------------


def boom_handler(
    registry: Registry, error: BaseException, name: str = "t.fail", **opts: Any
) -> None:
    async def fail(payload: Any, ctx: TaskContext) -> None:
        raise error

    registry.handler(name, **opts)(fail)


@pytest.mark.parametrize(("attempts", "bound_ms"), [(1, 1000), (2, 2000)])
async def test_exception_retries_within_backoff_bound(
    registry: Registry, env: ExecutionEnv, attempts: int, bound_ms: int
) -> None:
    boom_handler(registry, ValueError("boom"))
    delays = set()
    for _ in range(30):
        outcome = await execute(make_task("t.fail", attempts=attempts), env)
        assert outcome.kind == "retry"
        assert outcome.detail == "ValueError: boom"
        assert "ValueError: boom" in outcome.traceback
        assert "in fail" in outcome.traceback
        delays.add(outcome.delay_ms)
    assert all(0 <= d < bound_ms for d in delays)
    assert len(delays) > 1, "full jitter should vary the delay"


@pytest.mark.parametrize(("attempts", "delay_ms"), [(1, 1000), (2, 2000)])
async def test_exception_retry_delay_without_jitter(
    registry: Registry, env: ExecutionEnv, attempts: int, delay_ms: int
) -> None:
    boom_handler(registry, ValueError("boom"))
    outcome = await execute(make_task("t.fail", attempts=attempts), no_jitter_env(env))
    assert (outcome.kind, outcome.delay_ms) == ("retry", delay_ms)


async def test_task_backoff_wins(registry: Registry, env: ExecutionEnv) -> None:
    boom_handler(registry, ValueError("x"), backoff=BackoffPolicy(kind="fixed", base_s=9))
    task = make_task("t.fail", backoff=BackoffPolicy(kind="fixed", base_s=7, jitter=False))
    assert (await execute(task, env)).delay_ms == 7000


async def test_handler_backoff_wins_over_settings(registry: Registry, env: ExecutionEnv) -> None:
    boom_handler(
        registry, ValueError("x"), backoff=BackoffPolicy(kind="fixed", base_s=9, jitter=False)
    )
    assert (await execute(make_task("t.fail", attempts=2), env)).delay_ms == 9000


async def test_last_attempt_is_dead_retries_exhausted(
    registry: Registry, env: ExecutionEnv
) -> None:
    boom_handler(registry, ValueError("boom"))
    outcome = await execute(make_task("t.fail", attempts=3), env)
    assert (outcome.kind, outcome.dead_reason) == ("dead", "retries_exhausted")
    assert outcome.detail == "ValueError: boom"
    assert "ValueError" in outcome.traceback


@pytest.mark.parametrize(
    ("attempts", "task_max", "handler_max", "kind"),
    [
        (1, 0, 5, "dead"),  # task max_retries=0 beats handler 5
        (5, None, 5, "retry"),  # handler 5 beats settings 2
        (6, None, 5, "dead"),
        (3, None, None, "dead"),
    ],
)
async def test_max_retries_precedence(
    registry: Registry,
    env: ExecutionEnv,
    attempts: int,
    task_max: int | None,
    handler_max: int | None,
    kind: str,
) -> None:
    boom_handler(registry, ValueError("boom"), max_retries=handler_max)
    outcome = await execute(make_task("t.fail", attempts=attempts, max_retries=task_max), env)
    assert outcome.kind == kind


@pytest.fixture
def slow(registry: Registry) -> None:
    @registry.handler("t.slow")
    async def slow_handler(payload: Any, ctx: TaskContext) -> None:
        await asyncio.sleep(1)


@pytest.mark.usefixtures("slow")
@pytest.mark.parametrize(
    ("attempts", "kind", "extra"), [(1, "retry", None), (3, "dead", "timed_out")]
)
async def test_timeout(env: ExecutionEnv, attempts: int, kind: str, extra: str | None) -> None:
    task = make_task("t.slow", attempts=attempts, timeout_s=0.05)
    outcome = await asyncio.wait_for(execute(task, env), timeout=0.9)
    assert outcome.kind == kind
    assert outcome.detail == "TimeoutError: timed out after 0.05s"
    if extra is not None:
        assert outcome.dead_reason == extra


async def test_handler_timeout_applies_when_task_has_none(
    registry: Registry, env: ExecutionEnv
) -> None:
    @registry.handler("t.slow", timeout_s=0.05)
    async def slow_handler(payload: Any, ctx: TaskContext) -> None:
        await asyncio.sleep(1)

    outcome = await asyncio.wait_for(execute(make_task("t.slow"), env), timeout=0.9)
    assert outcome.detail == "TimeoutError: timed out after 0.05s"


@pytest.mark.usefixtures("slow")
async def test_settings_timeout_applies_last(env: ExecutionEnv) -> None:
    fast = ExecutionEnv(env.registry, make_settings(task_timeout_s=0.05), env.http)
    outcome = await asyncio.wait_for(execute(make_task("t.slow"), fast), timeout=0.9)
    assert outcome.detail == "TimeoutError: timed out after 0.05s"


async def test_timeout_error_raised_by_handler_is_not_a_timeout(
    registry: Registry, env: ExecutionEnv
) -> None:
    boom_handler(registry, TimeoutError("upstream slow"))
    outcome = await execute(make_task("t.fail", attempts=3), env)
    assert (outcome.kind, outcome.dead_reason) == ("dead", "retries_exhausted")
    assert outcome.detail == "TimeoutError: upstream slow"


async def test_give_up_is_dead_non_retryable(registry: Registry, env: ExecutionEnv) -> None:
    boom_handler(registry, GiveUp("bad address"))
    outcome = await execute(make_task("t.fail", attempts=1), env)
    assert (outcome.kind, outcome.dead_reason) == ("dead", "non_retryable")
    assert outcome.detail == "GiveUp: bad address"


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "retry_on", "give_up_on", "kind", "extra"),
    [
        (Transient("t"), (Transient,), (), "retry", None),
        (Permanent("p"), (Transient,), (), "dead", "non_retryable"),
        (Permanent("p"), (), (Permanent,), "dead", "non_retryable"),
        (Transient("t"), (Transient,), (Transient,), "dead", "non_retryable"),
        (Retry("again"), (Transient,), (), "retry", None),
        (Transient("t"), (), (Permanent,), "retry", None),
    ],
)
async def test_handler_retry_on_and_give_up_on(
    registry: Registry,
    env: ExecutionEnv,
    error: Exception,
    retry_on: tuple[type[BaseException], ...],
    give_up_on: tuple[type[BaseException], ...],
    kind: str,
    extra: str | None,
) -> None:
    boom_handler(registry, error, retry_on=retry_on, give_up_on=give_up_on)
    outcome = await execute(make_task("t.fail"), env)
    assert outcome.kind == kind
    if extra is not None:
        assert outcome.dead_reason == extra


async def test_explicit_retry_delay(registry: Registry, env: ExecutionEnv) -> None:
    boom_handler(registry, Retry("rate limited", delay_s=3))
    task = make_task("t.fail")
    outcome = await execute(task, env)
    assert outcome == Outcome(
        outcome.task_id,
        "retry",
        "Retry: rate limited",
        outcome.traceback,
        delay_ms=3000,
        attempt=task.attempts,
    )


async def test_explicit_retry_on_last_attempt_is_exhausted(
    registry: Registry, env: ExecutionEnv
) -> None:
    boom_handler(registry, Retry("rate limited", delay_s=3))
    outcome = await execute(make_task("t.fail", attempts=3), env)
    assert (outcome.kind, outcome.dead_reason) == ("dead", "retries_exhausted")


@pytest.mark.parametrize("delay_s", [math.inf, -math.inf, math.nan])
async def test_explicit_retry_with_absurd_delay_still_gives_an_outcome(
    registry: Registry, env: ExecutionEnv, delay_s: float
) -> None:
    # execute() promises to return an outcome; a worker whose attempt raises keeps the
    # task in flight, heartbeating its lease forever.
    boom_handler(registry, Retry("weird", delay_s=delay_s))
    # Defined: a delay that is not a finite number is ignored, the task's backoff applies.
    fixed = BackoffPolicy(kind="fixed", base_s=2, jitter=False)
    outcome = await execute(make_task("t.fail", backoff=fixed), env)
    assert (outcome.kind, outcome.delay_ms) == ("retry", 2000)


async def test_long_error_and_traceback_are_truncated(
    registry: Registry, env: ExecutionEnv
) -> None:
    @registry.handler("t.deep")
    async def deep(payload: Any, ctx: TaskContext) -> None:
        def recurse(n: int) -> None:
            if n == 0:
                raise ValueError("x" * 10_000)
            recurse(n - 1)

        recurse(200)

    outcome = await execute(make_task("t.deep"), env)
    assert len(outcome.detail) == MAX_ERROR_CHARS
    assert outcome.detail.startswith("ValueError: xxx")
    assert 0 < len(outcome.traceback) <= MAX_TRACEBACK_CHARS
    assert outcome.traceback.rstrip().endswith("x")  # the end of the traceback is kept


# -- results ------------------------------------------------------------------------------


async def test_oversized_result_is_replaced_by_a_marker(
    registry: Registry, env: ExecutionEnv
) -> None:
    registry.handler("t.big")(lambda payload, ctx: "y" * 5000)
    outcome = await execute(make_task("t.big"), env)
    assert outcome.kind == "succeeded"
    assert json.loads(outcome.detail) == {"result_truncated": True, "size_bytes": 5002}


async def test_result_at_the_limit_is_kept(registry: Registry, env: ExecutionEnv) -> None:
    registry.handler("t.big")(lambda payload, ctx: "y" * 998)  # 1000 bytes with quotes
    outcome = await execute(make_task("t.big"), env)
    assert outcome.detail == '"' + "y" * 998 + '"'


async def test_result_limit_counts_bytes_not_characters(
    registry: Registry, env: ExecutionEnv
) -> None:
    registry.handler("t.big")(lambda payload, ctx: {"k": "é" * 200})
    big = ExecutionEnv(env.registry, make_settings(max_result_bytes=300), env.http)
    assert json.loads((await execute(make_task("t.big"), big)).detail)["result_truncated"]


def _circular() -> Any:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _deeply_nested() -> Any:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    return value


class _Opaque:
    def __str__(self) -> str:
        raise RuntimeError("no string form")


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


async def test_result_as_deep_as_storable_is_kept(registry: Registry, env: ExecutionEnv) -> None:
    registry.handler("t.deep")(lambda payload, ctx: _nested(MAX_STORED_JSON_DEPTH))
    outcome = await execute(make_task("t.deep"), env)
    assert json.loads(outcome.detail) == _nested(MAX_STORED_JSON_DEPTH)


@pytest.mark.parametrize(
    "make_result",
    [
        _circular,
        lambda: {(1, 2): "tuple key"},
        _deeply_nested,
        lambda: {"obj": _Opaque()},
        lambda: {"ratio": float("nan")},
        lambda: [float("inf")],
        # Serialisable, but too deep for the status API to show again.
        lambda: _nested(MAX_STORED_JSON_DEPTH + 1),
        lambda: {"text": "\ud800"},
        lambda: {"\udfff": 1},
    ],
    ids=[
        "circular",
        "tuple-key",
        "deeply-nested",
        "str-raises",
        "nan",
        "infinity",
        "deeper-than-storable",
        "lone-surrogate",
        "surrogate-key",
    ],
)
async def test_unserialisable_result_is_replaced_by_a_marker(
    registry: Registry, env: ExecutionEnv, make_result: Any
) -> None:
    registry.handler("t.odd")(lambda payload, ctx: make_result())
    outcome = await execute(make_task("t.odd"), env)
    assert outcome.kind == "succeeded"
    # What is stored must be standard JSON that any client can parse.
    stored = _strict_json(outcome.detail)
    assert set(stored) == {"unserialisable_result"}
    assert stored["unserialisable_result"]


@pytest.mark.parametrize("number", [2**63 - 1, 2**64, 2**70, -(2**64)])
async def test_payload_integers_of_any_size_reach_the_handler_exactly(
    registry: Registry, env: ExecutionEnv, number: int
) -> None:
    seen: list[Any] = []
    registry.handler("t.ok")(lambda payload, ctx: seen.append(payload))
    await execute(make_task(payload={"n": number, "s": "x"}), env)
    assert seen == [{"n": number, "s": "x"}]
    assert type(seen[0]["n"]) is int


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize("extra", [{}, {"x": None}])
async def test_an_enum_in_a_result_is_stored_alike_on_both_paths(
    registry: Registry, env: ExecutionEnv, extra: dict[str, Any]
) -> None:
    """A None sends the result down the checked stdlib path; the enum is stored the same."""
    registry.handler("t.ok")(lambda payload, ctx: {"c": Colour.RED, **extra})
    stored = json.loads((await execute(make_task(), env)).detail)
    assert stored == {"c": "red", **extra}
