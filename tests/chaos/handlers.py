"""Handlers of the chaos run; every execution leaves lines that outlive any kill.

A worker loads this module when ``TASKFORGE_HANDLERS=tests.chaos.handlers``; the run starts
workers from the repository root, so the import resolves. Nothing in the product registers it.

Each execution appends ``start <task id> <attempt> <pid>`` before the handler does anything, and
``ok ...`` or ``raise ...`` just before it returns or raises, to a file of its own worker process
(``exec-<pid>.log`` in the directory named by ``CHAOS_EXEC_DIR``). The lines are written with
``O_APPEND``, one ``write`` each: once ``write`` returns the line is in the kernel, so a SIGKILL
of the worker one instruction later keeps it, and a Redis restart cannot touch it. (A separate
Redis that is never killed would do too; a file needs no process and no network.) One file per
process means no two writers ever share a file.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from taskforge.handlers import TaskContext, handler
from tests.chaos.common import EXEC_DIR_ENV
from tests.support.task_handlers import append_line

_directory = os.environ.get(EXEC_DIR_ENV)
if not _directory:
    # load_handlers reports an ImportError as a configuration error naming this module.
    raise ImportError(f"{EXEC_DIR_ENV} must name the directory chaos executions are logged to")
_log_path = os.path.join(_directory, f"exec-{os.getpid()}.log")


class ChaosFailure(RuntimeError):
    """The failure a failing chaos handler raises on purpose."""


def _mark(event: str, ctx: TaskContext) -> None:
    append_line(_log_path, f"{event} {ctx.task_id} {ctx.attempt} {os.getpid()}")


def _fail(ctx: TaskContext) -> None:
    _mark("raise", ctx)
    raise ChaosFailure(f"{ctx.type} fails attempt {ctx.attempt} on purpose")


@handler("chaos.quick")
async def quick(payload: Any, ctx: TaskContext) -> None:
    """Return at once."""
    _mark("start", ctx)
    _mark("ok", ctx)


@handler("chaos.slow")
async def slow(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Sleep ``seconds``: long enough to be running when a kill lands."""
    _mark("start", ctx)
    await asyncio.sleep(float(payload["seconds"]))
    _mark("ok", ctx)


@handler("chaos.flaky")
async def flaky(payload: dict[str, Any], ctx: TaskContext) -> None:
    """Fail with probability ``p`` on each attempt, else succeed."""
    _mark("start", ctx)
    if random.random() < float(payload["p"]):
        _fail(ctx)
    _mark("ok", ctx)


@handler("chaos.fail")
async def fail(payload: Any, ctx: TaskContext) -> None:
    """Fail every attempt: the task must end in the DLQ."""
    _mark("start", ctx)
    _fail(ctx)
