"""Handlers for tests that run real worker processes (``TASKFORGE_HANDLERS`` names this module).

The test and the worker are different processes, so every handler that a test must observe
leaves a trace in a file named by its payload: lines appended with ``O_APPEND`` (one ``write``
each, so concurrent attempts never interleave) survive a SIGKILL of the worker that wrote them.

Do not import this module into the test process: it registers into the default registry.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from taskforge.handlers import TaskContext, handler


def append_line(path: str, line: str) -> None:
    """Append ``line`` to ``path`` in one ``write`` call."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _kill_own_process() -> None:
    """Die as an OOM kill or a node failure would: no cleanup, no outcome recorded."""
    os.kill(os.getpid(), signal.SIGKILL)


@handler("crash")
async def crash(payload: dict[str, Any], ctx: TaskContext) -> None:
    """SIGKILL the worker running it, every time; appends the task id to ``path`` first."""
    if payload.get("path"):
        append_line(payload["path"], ctx.task_id)
    _kill_own_process()


@handler("crash_once")
async def crash_once(payload: dict[str, Any], ctx: TaskContext) -> dict[str, int]:
    """SIGKILL the worker the first time (creating file ``marker``); succeed once it exists."""
    try:
        fd = os.open(payload["marker"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return {"attempt": ctx.attempt}
    os.close(fd)
    _kill_own_process()
    return {"attempt": ctx.attempt}  # not reached


@handler("slow")
async def slow(payload: dict[str, Any], ctx: TaskContext) -> dict[str, float]:
    """Sleep ``seconds`` without blocking.

    Appends the task id to ``started_marker`` before sleeping and to ``done_marker`` after.
    """
    if payload.get("started_marker"):
        append_line(payload["started_marker"], ctx.task_id)
    seconds = float(payload["seconds"])
    await asyncio.sleep(seconds)
    if payload.get("done_marker"):
        append_line(payload["done_marker"], ctx.task_id)
    return {"slept_s": seconds}


@handler("record")
async def record(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Append the task id to ``path``: how many times each task ran, and in what order."""
    append_line(payload["path"], ctx.task_id)


@handler("block_loop")
async def block_loop(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Block the worker's event loop for ``seconds`` (a bug /healthz must catch)."""
    if payload.get("started_marker"):
        append_line(payload["started_marker"], ctx.task_id)
    time.sleep(float(payload["seconds"]))
