"""Contract checks of the Lua scripts (docs/conventions.md habits 1-3: #lua-scripts,
#error-codes, #key-names) and of their Python wrappers.

Static checks parse every file in ``taskforge/lua``; the wrapper checks run each public broker
function once against the session Redis and record the keys it passes to each script.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

import taskforge
from taskforge.broker import Broker
from taskforge.broker.admin import cancel_task, purge_dead, queue_stats, requeue_dead
from taskforge.broker.consume import Outcome, fetch, finish, heartbeat
from taskforge.broker.enqueue import enqueue_many
from taskforge.broker.maintenance import promote_due, reclaim_expired
from taskforge.broker.registry import reap_queues
from taskforge.errors import (
    ErrorCode,
    IdempotencyConflict,
    ScriptError,
    TaskNotCancellable,
    TaskNotFound,
)
from taskforge.keys import QUEUES_REGISTRY, key_slot
from taskforge.models import DeadReason, TaskSpec
from taskforge.ratelimit import check_rate
from taskforge.scripts import SCRIPT_NAMES, Scripts, declared_key_count, script_source

LUA_DIR = Path(taskforge.__file__).parent / "lua"
INCLUDES_DIR = LUA_DIR / "includes"
SCRIPT_FILES = sorted(LUA_DIR.glob("*.lua"))
INCLUDE_FILES = sorted(INCLUDES_DIR.glob("*.lua"))
SCRIPTS = [p.stem for p in SCRIPT_FILES]
INCLUDES = [p.stem for p in INCLUDE_FILES]


# -- parsing helpers ----------------------------------------------------------------------


def split_header(text: str) -> tuple[str, str]:
    """The ``--[[ ... ]]`` block comment that opens a script, and the body after it."""
    assert text.startswith("--[["), "a script must open with a --[[ ... ]] header"
    header, sep, body = text[4:].partition("]]")
    assert sep, "the header block comment is not closed"
    return header, body


def header_keys(header: str) -> list[int]:
    """The ``KEYS[i]`` entries listed at the start of header lines, in order."""
    return [int(n) for n in re.findall(r"^\s*KEYS\[(\d+)\]", header, re.MULTILINE)]


def header_argv(header: str) -> tuple[list[int], list[int]]:
    """Documented ``ARGV[i]`` entries and open ranges ``ARGV[i ..]`` (their start)."""
    exact, ranges = [], []
    for number, dots in re.findall(r"^\s*ARGV\[(\d+)(\s*\.\.)?\s*\]", header, re.MULTILINE):
        (ranges if dots else exact).append(int(number))
    return exact, ranges


def argv_documented(n: int, exact: list[int], ranges: list[int]) -> bool:
    return n in exact or any(n >= start for start in ranges)


_STRING_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')

#: What a comment looks like when it is code that was switched off rather than prose.
_CODE_LIKE = re.compile(
    r"""^(
        local\s+(function\s+\w|\w+\s*[=,])
      | (rcall|redis\.\w+|cjson\.\w+|string\.\w+|table\.\w+|math\.\w+
         |tonumber|tostring|ipairs|pairs|pcall|error)\s*\(
      | return(\s*$|\s*[{(\#"'-]|\s+\w+\s*$|\s+\w+\s*[(.\[,])
      | (end|else|break)\s*$
      | (if|elseif|while)\b.*\b(then|do)\s*$
      | for\b.*\bdo\s*$
      | \w+(\[[^\]]*\]|\.\w+)*\s*=\s*[^=\s]
      | \w+(\.\w+|:\w+)*\(.*\)\s*$
    )""",
    re.VERBOSE,
)


def commented_out_code(source: str) -> list[str]:
    """Comment lines (whole-line or trailing) whose text looks like Lua code."""
    found = []
    for line in source.splitlines():
        stripped = _STRING_RE.sub('""', line)
        if "--" not in stripped or re.match(r'^--- @include "', line):
            continue
        comment = stripped.split("--", 1)[1]
        if comment.startswith("[["):
            continue
        text = comment.lstrip("-").strip()
        if _CODE_LIKE.match(text):
            found.append(line)
    return found


def code_of(source: str) -> str:
    """``source`` without comments and string contents, for call-site searches."""
    lines = []
    for line in source.splitlines():
        stripped = _STRING_RE.sub('""', line)
        lines.append(stripped.split("--", 1)[0])
    return "\n".join(lines)


_KEYS_SCAN_RE = re.compile(r"call\(\s*['\"](keys|scan)['\"]", re.IGNORECASE)
_NEGATIVE_RETURN_RE = re.compile(r"return\s*\{\s*-\s*(\d+)|return\s+-\s*(\d+)")


def negative_returns(body: str) -> set[int]:
    return {-int(a or b) for a, b in _NEGATIVE_RETURN_RE.findall(code_of(body))}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# -- self-tests of the parsers, so that the checks below can fail -------------------------


@pytest.mark.parametrize(
    "line",
    [
        '-- rcall("DEL", key)',
        '--redis.call("SET", k, v)',
        "-- local x = 1",
        "-- local function helper(a)",
        "-- return {-1, taskId}",
        "-- return #ids",
        "-- return out",
        "-- end",
        "--   if state == 'running' then",
        "-- for i = 1, n do",
        "-- counter = counter + 1",
        "-- addEvent(eventsKey, {at = now})",
        'x = 1 -- rcall("DEL", key)',
    ],
)
def test_commented_out_code_detector_flags(line: str) -> None:
    assert commented_out_code(line) == [line]


@pytest.mark.parametrize(
    "line",
    [
        "-- 1. Check every idempotency key before writing anything, so a conflict changes nothing.",
        "-- the group's lag (what KEDA reads) stays computable.",
        "-- string.format keeps every digit: Redis renders a bare Lua number with 14 digits.",
        "-- Returns the number of ids taken.",
        "else -- giveback",
        '--- @include "nowMs"',
        'local s = "--not a comment"',
        "-- end of the first phase: nothing was written",
    ],
)
def test_commented_out_code_detector_accepts_prose(line: str) -> None:
    assert commented_out_code(line) == []


def test_header_parsers() -> None:
    header = """
  KEYS[1] a  (zset)
  KEYS[2] b  (hash)
  ARGV[1] one
  ARGV[2] two
  ARGV[3 ..] rest; see also ARGV[9] in prose
"""
    assert header_keys(header) == [1, 2]
    exact, ranges = header_argv(header)
    assert (exact, ranges) == ([1, 2], [3])
    assert argv_documented(7, exact, ranges)
    assert not argv_documented(3, [1, 2], [])
    assert negative_returns("if x then return {-4, y} end\nreturn -5\n-- return {-6}") == {-4, -5}


# -- the set of scripts -------------------------------------------------------------------


def test_script_files_match_script_names() -> None:
    assert len(set(SCRIPT_NAMES)) == len(SCRIPT_NAMES), "SCRIPT_NAMES has duplicates"
    assert set(SCRIPTS) == set(SCRIPT_NAMES)


def test_lua_folder_has_only_scripts_and_includes() -> None:
    stray = [
        p.relative_to(LUA_DIR)
        for p in LUA_DIR.rglob("*")
        if p.is_file() and p.suffix == ".lua" and p.parent not in (LUA_DIR, INCLUDES_DIR)
    ]
    assert stray == []


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_file_name_is_snake_case(name: str) -> None:
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name), name


# -- per-script header contract ----------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_header_lists_contiguous_keys(name: str) -> None:
    header, _ = split_header(read(LUA_DIR / f"{name}.lua"))
    keys = header_keys(header)
    assert keys, f"{name}.lua documents no KEYS"
    assert keys == list(range(1, len(keys) + 1)), f"{name}.lua KEYS are {keys}"
    assert declared_key_count(name) == len(keys)


@pytest.mark.parametrize("name", SCRIPTS)
def test_header_keys_carry_a_redis_type(name: str) -> None:
    header, _ = split_header(read(LUA_DIR / f"{name}.lua"))
    for line in header.splitlines():
        if re.match(r"^\s*KEYS\[\d+\]", line):
            assert re.search(r"\((zset|hash|stream|string|list|set|prefix)\)", line), line


@pytest.mark.parametrize("name", SCRIPTS)
def test_header_argv_entries_are_contiguous(name: str) -> None:
    header, _ = split_header(read(LUA_DIR / f"{name}.lua"))
    exact, ranges = header_argv(header)
    listed = sorted(exact + ranges)
    assert listed == list(range(1, len(listed) + 1)), f"{name}.lua ARGV entries {listed}"
    assert all(start == max(listed) for start in ranges), "an open ARGV range must come last"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_argv_used_is_documented(name: str) -> None:
    header, body = split_header(read(LUA_DIR / f"{name}.lua"))
    exact, ranges = header_argv(header)
    used = sorted({int(n) for n in re.findall(r"ARGV\[(\d+)\]", body)})
    undocumented = [n for n in used if not argv_documented(n, exact, ranges)]
    assert undocumented == [], f"{name}.lua uses undocumented ARGV {undocumented}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_header_documents_returns(name: str) -> None:
    header, _ = split_header(read(LUA_DIR / f"{name}.lua"))
    assert re.search(r"^\s*Returns:", header, re.MULTILINE), f"{name}.lua has no Returns:"


@pytest.mark.parametrize("name", SCRIPTS)
def test_body_binds_rcall_and_names_keys_first(name: str) -> None:
    header, body = split_header(read(LUA_DIR / f"{name}.lua"))
    lines = [line for line in body.strip().splitlines() if line.strip()]
    assert lines[0] == "local rcall = redis.call", f"{name}.lua must bind rcall first"
    count = len(header_keys(header))
    bindings = lines[1 : 1 + count]
    for index, line in enumerate(bindings, start=1):
        assert re.fullmatch(rf"local \w+ = KEYS\[{index}\]", line), f"{name}.lua: {line!r}"
    rest = "\n".join(lines[1 + count :])
    assert "KEYS[" not in code_of(rest), f"{name}.lua uses KEYS[...] outside the key locals"


@pytest.mark.parametrize("path", SCRIPT_FILES + INCLUDE_FILES, ids=lambda p: p.name)
def test_no_commented_out_code(path: Path) -> None:
    text = read(path)
    if path.parent == LUA_DIR:
        _, text = split_header(text)
    assert commented_out_code(text) == []


@pytest.mark.parametrize("name", SCRIPTS)
def test_includes_exist_and_are_well_formed(name: str) -> None:
    text = read(LUA_DIR / f"{name}.lua")
    for line in text.splitlines():
        if "@include" in line:
            match = re.fullmatch(r'--- @include "([A-Za-z0-9_]+)"', line)
            assert match, f"{name}.lua: malformed include line {line!r} would not be expanded"
            assert (INCLUDES_DIR / f"{match[1]}.lua").is_file(), f"{name}.lua: {line!r}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_helpers_called_are_included_and_included_are_called(name: str) -> None:
    _, body = split_header(read(LUA_DIR / f"{name}.lua"))
    included = set(re.findall(r'^--- @include "(\w+)"$', body, re.MULTILINE))
    # A helper may call another (releaseEntries calls groupInfo): the script includes both.
    code = "\n".join([code_of(body), *(code_of(read(INCLUDES_DIR / f"{h}.lua")) for h in included)])
    called = {helper for helper in INCLUDES if re.search(rf"(?<!function )\b{helper}\(", code)}
    assert called - included == set(), f"{name}.lua calls helpers it does not include"
    assert included - called == set(), f"{name}.lua includes helpers it never calls"


@pytest.mark.parametrize("name", INCLUDES)
def test_include_defines_one_local_function_of_its_name(name: str) -> None:
    code = code_of(read(INCLUDES_DIR / f"{name}.lua"))
    functions = re.findall(r"^local function (\w+)\(", code, re.MULTILINE)
    assert functions == [name]
    assert not re.search(r"^function\b", code, re.MULTILINE), "helpers must be local"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_source_expands_every_include(name: str) -> None:
    source = script_source(name)
    assert "@include" not in source
    _, body = split_header(read(LUA_DIR / f"{name}.lua"))
    for helper in re.findall(r'^--- @include "(\w+)"$', body, re.MULTILINE):
        assert f"local function {helper}(" in source


@pytest.mark.parametrize("path", SCRIPT_FILES + INCLUDE_FILES, ids=lambda p: p.name)
def test_no_keys_or_scan_command(path: Path) -> None:
    assert not _KEYS_SCAN_RE.search(read(path))


def test_no_keys_or_scan_command_anywhere_in_services() -> None:
    services = Path(taskforge.__file__).parents[2]
    hits = [
        f"{p.relative_to(services)}:{n}"
        for p in [*services.rglob("*.py"), *services.rglob("*.lua")]
        for n, line in enumerate(read(p).splitlines(), start=1)
        if _KEYS_SCAN_RE.search(line)
    ]
    assert hits == []


# -- error codes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_negative_returns_are_error_codes(name: str) -> None:
    header, body = split_header(read(LUA_DIR / f"{name}.lua"))
    codes = negative_returns(body)
    members = {member.value for member in ErrorCode}
    assert codes - members == set(), f"{name}.lua returns codes missing from ErrorCode"
    for code in codes:
        assert re.search(rf"(?<![\d-]){code}(?!\d)", header), f"{name}.lua: {code} undocumented"


def test_every_error_code_is_returned_by_some_script() -> None:
    returned: set[int] = set()
    for path in SCRIPT_FILES:
        returned |= negative_returns(split_header(read(path))[1])
    assert {member.value for member in ErrorCode} == returned


# -- against Redis ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPT_NAMES)
async def test_script_compiles_on_redis(redis_client: Redis, name: str) -> None:
    sha = await redis_client.script_load(script_source(name))
    assert await redis_client.script_exists(sha) == [True]


async def test_run_refuses_wrong_key_count(redis_client: Redis) -> None:
    scripts = Scripts.register(redis_client)
    with pytest.raises(ScriptError, match=r"promote\.lua declares 3 keys, got 2"):
        await scripts.run("promote", ["a", "b"], [1])


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Broker]:
    b = Broker.from_url(redis_url)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def script_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """Records (script name, keys) of every Scripts.run call."""
    calls: list[tuple[str, list[str]]] = []
    original, original_queue = Scripts.run, Scripts.queue

    async def spy(self: Scripts, name: str, keys: list[str], args: list[Any]) -> Any:
        calls.append((name, list(keys)))
        return await original(self, name, keys, args)

    async def spy_queue(
        self: Scripts, pipe: Pipeline, name: str, keys: list[str], args: list[Any]
    ) -> None:
        calls.append((name, list(keys)))
        await original_queue(self, pipe, name, keys, args)

    monkeypatch.setattr(Scripts, "run", spy)
    monkeypatch.setattr(Scripts, "queue", spy_queue)
    return calls


def now_ms() -> int:
    return int(time.time() * 1000)


async def enqueue(broker: Broker, *specs: TaskSpec) -> list[str]:
    results = await enqueue_many(
        broker, list(specs), now_ms=now_ms(), idempotency_ttl_s=60, max_payload_bytes=65_536
    )
    return [r.task_id for r in results]


async def test_every_wrapper_passes_the_declared_keys(
    broker: Broker, queue_name: str, script_calls: list[tuple[str, list[str]]]
) -> None:
    q = queue_name
    ids = await enqueue(broker, *(TaskSpec(type="t", queue=q, payload={"n": n}) for n in range(3)))
    (later,) = await enqueue(broker, TaskSpec(type="t", queue=q, delay_s=3600))

    tasks, delivered, _ = await fetch(broker, q, "w1", 10, 30_000)
    assert delivered == 3
    assert sorted(t.id for t in tasks) == sorted(ids)
    assert await heartbeat(broker, q, "w1", ids, 30_000) == ([], [])
    stale = await finish(
        broker,
        q,
        "w1",
        [
            Outcome(ids[0], "succeeded", '{"ok":true}'),
            Outcome(ids[1], "dead", "boom", dead_reason=DeadReason.RETRIES_EXHAUSTED),
            Outcome(ids[2], "retry", "flaky", delay_ms=0),
        ],
        task_ttl_s=60,
        dead_ttl_s=60,
    )
    assert stale == []
    assert await promote_due(broker, q, 100) == 1
    assert await reclaim_expired(broker, q, 100, task_ttl_s=60) == 0
    assert await cancel_task(broker, later, task_ttl_s=60) == "cancelled"
    assert await requeue_dead(broker, q, [], limit=10) == 1
    tasks, _, _ = await fetch(broker, q, "w2", 10, 30_000)
    assert sorted(t.id for t in tasks) == sorted(ids[1:])
    await finish(
        broker,
        q,
        "w2",
        [Outcome(t.id, "dead", "again", dead_reason=DeadReason.NON_RETRYABLE) for t in tasks],
        task_ttl_s=60,
        dead_ttl_s=60,
    )
    assert await purge_dead(broker, q, batch=1) == 2
    assert (await queue_stats(broker, q)).dead == 0
    assert await reap_queues(broker, [q], idle_s=3600) == []
    decision = await check_rate(broker.scripts, uuid.uuid4().hex, rate_per_s=10, burst=5)
    assert decision.allowed

    assert {name for name, _ in script_calls} == set(SCRIPT_NAMES), "a script went untested"
    for name, keys in script_calls:
        header, _ = split_header(read(LUA_DIR / f"{name}.lua"))
        assert len(keys) == len(header_keys(header)) == declared_key_count(name), name
        assert len({key_slot(k) for k in keys}) == 1, f"{name}: keys span slots {keys}"
        if name == "register_queues":
            assert keys == [QUEUES_REGISTRY]
        elif name != "ratelimit":
            assert {key_slot(k) for k in keys} == {key_slot(q)}


async def test_cancel_error_codes_map_to_errors_naming_task_and_script(
    broker: Broker, queue_name: str
) -> None:
    missing = f"{queue_name}.{'0' * 32}"
    with pytest.raises(TaskNotFound) as not_found:
        await cancel_task(broker, missing, task_ttl_s=60)
    assert missing in str(not_found.value)
    assert "cancel" in str(not_found.value)

    (task_id,) = await enqueue(broker, TaskSpec(type="t", queue=queue_name))
    tasks, _, _ = await fetch(broker, queue_name, "w1", 1, 30_000)
    await finish(
        broker,
        queue_name,
        "w1",
        [Outcome(tasks[0].id, "succeeded", "null")],
        task_ttl_s=60,
        dead_ttl_s=60,
    )
    with pytest.raises(TaskNotCancellable) as finished:
        await cancel_task(broker, task_id, task_ttl_s=60)
    message = str(finished.value)
    assert task_id in message
    assert "succeeded" in message
    assert "cancel" in message


async def test_idempotency_conflict_names_the_existing_task_and_script(
    broker: Broker, queue_name: str
) -> None:
    (first,) = await enqueue(
        broker, TaskSpec(type="t", queue=queue_name, payload=1, idempotency_key="k1")
    )
    with pytest.raises(IdempotencyConflict) as conflict:
        await enqueue(broker, TaskSpec(type="t", queue=queue_name, payload=2, idempotency_key="k1"))
    message = str(conflict.value)
    assert "k1" in message
    assert "enqueue" in message
    # The template says "(task {subject})": the subject must be a task id, not the queue.
    assert first in message
