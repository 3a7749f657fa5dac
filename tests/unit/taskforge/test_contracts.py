"""The hot path's contracts between Lua and Python (taskforge.broker.fields).

Static checks parse every script and include in ``taskforge/lua``: each hash command on a task
key names its fields as literals, each of those is in ``TASK_FIELDS``, and the scripts that
write a field are exactly the ones the table lists. The positional groups (enqueue's ARGV,
fetch's reply, finish's ARGV) must have the width and order their script's header documents,
on both sides. One Redis round trip checks the fetch group end to end.
"""

from __future__ import annotations

import ast
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import taskforge
from taskforge.broker import Broker, fields
from taskforge.broker.consume import Outcome, _fetched, fetch
from taskforge.broker.enqueue import _task_args, enqueue_many
from taskforge.broker.fields import (
    ENQUEUE_GROUP,
    FETCH_GROUP,
    OUTCOME_GROUP,
    TASK_FIELDS,
)
from taskforge.keys import QueueKeys
from taskforge.models import BackoffPolicy, DeadReason, TaskSpec
from taskforge.scripts import SCRIPT_NAMES

LUA_DIR = Path(taskforge.__file__).parent / "lua"
INCLUDES_DIR = LUA_DIR / "includes"

#: Hash commands, and which of their arguments after the key are field names.
HASH_COMMANDS = {
    "HSET": "pairs",
    "HMGET": "all",
    "HGET": "first",
    "HINCRBY": "first",
    "HDEL": "all",
}
WRITES = {"HSET", "HINCRBY", "HDEL"}
_CALL_RE = re.compile(r'(?:rcall|redis\.call)\(\s*"([A-Z]+)"\s*,')
_TASK_KEY_RE = re.compile(r'^(taskKey|base \.\. ":task:" \.\. \w+)$')
#: Hashes that are not task records (per-queue counters, queue marker).
OTHER_HASHES = {"countersKey", "metaKey"}
#: finishRecord's parameter that carries the terminal state's own field name.
FINISH_RECORD_FIELD_ARG = 5


# -- a small Lua reader: enough for call arguments, strings and comments ---------------------


def strip_comments(source: str) -> str:
    """``source`` without ``--`` comments (strings kept), block comments included."""
    source = re.sub(r"--\[\[.*?\]\]", "", source, flags=re.DOTALL)
    lines = []
    for line in source.splitlines():
        quote, i = "", 0
        while i < len(line):
            char = line[i]
            if quote:
                if char == "\\":
                    i += 1
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif line.startswith("--", i):
                line = line[:i]
                break
            i += 1
        lines.append(line)
    return "\n".join(lines)


def call_args(source: str, start: int) -> list[str]:
    """The top-level comma-separated arguments of the call whose ``(`` ends before ``start``."""
    args, current, depth, quote, i = [], "", 0, "", start
    while True:
        char = source[i]
        if quote:
            current += char
            if char == "\\":
                current += source[i + 1]
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote, current = char, current + char
        elif char in "({[":
            depth, current = depth + 1, current + char
        elif char in ")}]" and depth == 0:
            return [*args, " ".join(current.split())]
        elif char in ")}]":
            depth, current = depth - 1, current + char
        elif char == "," and depth == 0:
            args, current = [*args, " ".join(current.split())], ""
        else:
            current += char
        i += 1


def literal(arg: str) -> str | None:
    match = re.fullmatch(r'"([^"\\]*)"', arg)
    return match[1] if match else None


def field_args(command: str, args: list[str]) -> list[str]:
    rest = args[1:]
    kind = HASH_COMMANDS[command]
    if kind == "pairs":
        return rest[0::2]
    return rest[:1] if kind == "first" else rest


def task_field_uses(source: str, where: str) -> list[tuple[str, str, str]]:
    """``(command, field, where)`` for every hash command on a task key in ``source``."""
    code = strip_comments(source)
    uses = []
    for match in _CALL_RE.finditer(code):
        command = match[1]
        if command not in HASH_COMMANDS:
            continue
        args = call_args(code, match.end())
        key = args[0]
        if key in OTHER_HASHES:
            continue
        assert _TASK_KEY_RE.match(key), f"{where}: {command} on an unknown hash {key!r}"
        for arg in field_args(command, args):
            name = literal(arg)
            if name is None:
                # Only finishRecord takes a field name as a parameter; its callers pass literals.
                assert (where, arg) == ("finishRecord", "field"), f"{where}: {command} {arg!r}"
                continue
            uses.append((command, name, where))
    for match in re.finditer(r"\bfinishRecord\(", code):
        if code[: match.start()].rstrip().endswith("function"):
            continue
        args = call_args(code, match.end())
        if len(args) > FINISH_RECORD_FIELD_ARG:
            name = literal(args[FINISH_RECORD_FIELD_ARG])
            assert name is not None, f"{where}: finishRecord's field must be a literal"
            uses.append(("HSET", name, where))
    return uses


def includes_of(name: str) -> list[str]:
    text = (LUA_DIR / f"{name}.lua").read_text()
    return re.findall(r'^--- @include "(\w+)"$', text, re.MULTILINE)


def script_uses(name: str) -> list[tuple[str, str, str]]:
    """Field uses of script ``name``, its includes' bodies counted as its own."""
    uses = task_field_uses((LUA_DIR / f"{name}.lua").read_text(), name)
    for helper in includes_of(name):
        text = (INCLUDES_DIR / f"{helper}.lua").read_text()
        uses += [(c, f, name) for c, f, _ in task_field_uses(text, helper)]
    return uses


ALL_USES = [use for name in SCRIPT_NAMES for use in script_uses(name)]


# -- the field table --------------------------------------------------------------------


def test_the_parser_sees_the_known_field_uses() -> None:
    """Guards the checks below against a parser that silently finds nothing."""
    seen = {(command, field, where) for command, field, where in ALL_USES}
    assert ("HMGET", "cancel", "heartbeat") in seen
    assert ("HINCRBY", "attempts", "finish") in seen  # a give-back takes its attempt back
    assert ("HSET", "result", "finish") in seen  # through finishRecord's field argument
    assert ("HSET", "finished_ms", "cancel") in seen  # inside the finishRecord include
    assert ("HDEL", "worker", "reclaim") in seen


def test_parser_refuses_an_unknown_hash_and_a_computed_field() -> None:
    with pytest.raises(AssertionError, match="unknown hash"):
        task_field_uses('rcall("HSET", otherKey, "state", 1)', "x")
    with pytest.raises(AssertionError, match="name"):
        task_field_uses('rcall("HGET", taskKey, name)', "x")


def test_every_field_a_script_touches_is_in_the_table() -> None:
    unknown = {(field, where) for _, field, where in ALL_USES if field not in TASK_FIELDS}
    assert unknown == set()


def test_every_field_in_the_table_is_used_by_some_script() -> None:
    assert set(TASK_FIELDS) - {field for _, field, _ in ALL_USES} == set()


def test_each_fields_writers_are_exactly_the_scripts_listed() -> None:
    writers: dict[str, set[str]] = defaultdict(set)
    for command, field, where in ALL_USES:
        if command in WRITES:
            writers[field].add(where)
    mismatched = {
        name: (sorted(info.writers), sorted(writers[name]))
        for name, info in TASK_FIELDS.items()
        if info.writers != writers[name]
    }
    assert mismatched == {}


def test_every_table_constant_is_a_field_and_every_field_has_one() -> None:
    constants = {
        value
        for name, value in vars(fields).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    assert constants == set(TASK_FIELDS)


def test_records_reads_fields_through_the_table_only() -> None:
    """records.py names no task-hash field as a bare string."""
    tree = ast.parse(Path(taskforge.__file__).parent.joinpath("broker", "records.py").read_text())
    bare = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in TASK_FIELDS
    ]
    assert bare == []


# -- the positional groups ------------------------------------------------------------------


def header_group(name: str) -> tuple[int, tuple[str, ...]]:
    """The width and names of the per-task group ``name``.lua's header documents."""
    header = (LUA_DIR / f"{name}.lua").read_text().split("]]", 1)[0]
    match = re.search(r"(\d+) fields(?:, one per task)?:\s*([\w\s,]+)", header)
    assert match, f"{name}.lua: no 'N fields: a, b, ...' group in the header"
    names = tuple(n for n in re.split(r"[\s,]+", match[2]) if n)
    return int(match[1]), names


def local_fields(name: str) -> int | None:
    match = re.search(r"^local FIELDS = (\d+)$", (LUA_DIR / f"{name}.lua").read_text(), re.M)
    return int(match[1]) if match else None


@pytest.mark.parametrize(
    ("script", "group"),
    [("enqueue", ENQUEUE_GROUP), ("fetch", FETCH_GROUP), ("finish", OUTCOME_GROUP)],
)
def test_group_width_and_order_match_the_script_header(script: str, group: tuple[str, ...]) -> None:
    width, names = header_group(script)
    assert width == len(group)
    assert names[: len(group)] == group
    assert local_fields(script) in (None, len(group))


@pytest.mark.parametrize("script", ["enqueue", "finish"])
def test_scripts_read_every_slot_of_their_group_and_no_more(script: str) -> None:
    code = strip_comments((LUA_DIR / f"{script}.lua").read_text())
    offsets = {0} | {int(k) for k in re.findall(r"ARGV\[o \+ (\d+)\]", code)}
    assert offsets == set(range(local_fields(script) or 0))


def test_enqueue_stores_each_group_slot_under_the_field_of_its_name() -> None:
    code = strip_comments((LUA_DIR / "enqueue.lua").read_text())
    pairs = re.findall(r'"(\w+)", ARGV\[o \+ (\d+)\]', code)
    assert pairs, "enqueue.lua stores no ARGV slot directly"
    assert {(field, ENQUEUE_GROUP[int(k)]) for field, k in pairs} == {(f, f) for f, _ in pairs}


def test_enqueue_builds_one_full_group_per_task() -> None:
    spec = TaskSpec(
        type="t",
        max_retries=2,
        backoff=BackoffPolicy(),
        timeout_s=3,
        idempotency_key="k",
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    assert len(_task_args(spec, "default.1", 0, 1 << 20, spec.traceparent)) == len(ENQUEUE_GROUP)


def test_outcome_args_fill_one_group() -> None:
    retry = Outcome("q.1", "retry", "boom", "tb", delay_ms=1500, attempt=2)
    dead = Outcome("q.1", "dead", "boom", dead_reason=DeadReason.TIMED_OUT, attempt=3)
    assert dict(zip(OUTCOME_GROUP, retry.args(), strict=True)) == {
        "id": "q.1", "outcome": "retry", "detail": "boom", "traceback": "tb", "extra": "1500",
        "attempt": "2",
    }  # fmt: skip
    assert dict(zip(OUTCOME_GROUP, dead.args(), strict=True))["extra"] == "timed_out"
    assert Outcome("q.1", "succeeded", "1").args()[OUTCOME_GROUP.index("extra")] == ""


#: FetchedTask attribute of each FETCH_GROUP slot.
FETCHED_ATTR = {
    "id": "id",
    "type": "type",
    "payload": "payload_json",
    "attempts": "attempts",
    "max_retries": "max_retries",
    "backoff": "backoff_json",
    "timeout_s": "timeout_s",
    "traceparent": "traceparent",
    "deliveries": "deliveries",
}


def test_fetched_task_reads_each_slot_by_its_name() -> None:
    values: dict[str, Any] = {
        "id": "q.1", "type": "t", "payload": "{}", "attempts": 4, "max_retries": "5",
        "backoff": '{"kind":"fixed"}', "timeout_s": "6.5", "traceparent": "tp", "deliveries": 7,
    }  # fmt: skip
    assert set(values) == set(FETCH_GROUP) == set(FETCHED_ATTR)
    task = _fetched("q", [values[name] for name in FETCH_GROUP])
    got = {name: getattr(task, FETCHED_ATTR[name]) for name in FETCH_GROUP}
    assert got == {**values, "max_retries": 5, "timeout_s": 6.5}
    assert task.unreadable is None


def test_a_corrupted_option_marks_the_task_instead_of_failing_the_batch() -> None:
    group = ["q.1", "t", "{}", 1, "five", "", "", "", 0]
    task = _fetched("q", group)
    assert task.unreadable is not None and "five" in task.unreadable
    assert task.max_retries is None


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Broker]:
    b = Broker.from_url(redis_url)
    yield b
    await b.close()


async def test_fetch_returns_each_stored_field_in_its_slot(broker: Broker) -> None:
    queue = f"contracts-{uuid.uuid4().hex[:8]}"
    spec = TaskSpec(
        type="t.contract",
        queue=queue,
        payload={"n": 1},
        max_retries=4,
        backoff=BackoffPolicy(kind="fixed", base_s=2),
        timeout_s=7.5,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    )
    (result,) = await enqueue_many(
        broker, [spec], now_ms=0, idempotency_ttl_s=60, max_payload_bytes=1 << 20
    )
    (task,), _, _ = await fetch(broker, queue, "w", 1, 30_000)
    stored = await broker.redis.hgetall(QueueKeys(queue).task(result.task_id))
    got = {name: str(getattr(task, FETCHED_ATTR[name])) for name in FETCH_GROUP}
    # Deliveries are counted only by a tracing worker (tests/unit/taskforge/test_tracing.py).
    assert got == {name: stored.get(name, "0") for name in FETCH_GROUP}
    assert task.attempts == 1 and "deliveries" not in stored


@pytest.mark.parametrize(
    "make",
    [
        lambda: Outcome("q.1", "retry", "boom"),
        lambda: Outcome("q.1", "retry", "boom", delay_ms=-1),
        lambda: Outcome("q.1", "dead", "boom"),
        lambda: Outcome("q.1", "dead", "boom", delay_ms=5, dead_reason=DeadReason.TIMED_OUT),
        lambda: Outcome("q.1", "succeeded", "1", delay_ms=0),
        lambda: Outcome("q.1", "giveback", dead_reason=DeadReason.ABANDONED),
    ],
    ids=["retry-no-delay", "negative-delay", "dead-no-reason", "both", "extra-delay", "extra-why"],
)
def test_an_outcome_that_finish_would_misread_cannot_be_made(make: Any) -> None:
    with pytest.raises(ValueError, match=r"outcome|delay"):
        make()


def test_the_extra_slot_is_never_positional() -> None:
    """The old positional ``extra`` string can no longer be passed where a field is typed."""
    with pytest.raises(TypeError):
        Outcome("q.1", "retry", "boom", "", "1000")  # type: ignore[misc]
