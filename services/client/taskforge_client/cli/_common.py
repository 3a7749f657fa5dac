"""What every command shares: the client it talks through, output, and exit codes.

Exit codes (docs/client.md#exit-codes):

* 0: done.
* 1: the task failed or is dead (``status``), or finished dead or cancelled (``wait``,
  ``enqueue --wait``).
* 2: usage: a bad option or argument, missing configuration, or a request the server
  refused as sent (400, 409, 413, 415, 422).
* 3: not found: no such task, queue or key (404).
* 4: authentication: no key, an unknown or revoked key (401), or a missing scope (403).
* 5: the server failed or cannot be reached: 5xx, or 429 still after the retries.
* 6: ``wait`` or ``enqueue --wait`` gave up: the task had not finished in time.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from typer.core import TyperGroup

from taskforge_client.aio import AsyncTaskForge
from taskforge_client.client import TaskForge
from taskforge_client.errors import (
    ApiError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    NotFound,
    PermissionDenied,
    TaskForgeError,
    WaitTimeout,
)

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_AUTH = 4
EXIT_SERVER = 5
EXIT_WAIT_TIMEOUT = 6

#: Human output; markup off, so ids and errors with brackets print as they are.
out = Console(highlight=False, markup=False, soft_wrap=True)
#: Spinners, progress bars, confirmations and errors: never mixed into --json output.
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


@dataclass
class Settings:
    """The root options, kept on the click context for every command."""

    url: str | None = None
    api_key: str | None = None
    timeout_s: float = 30.0
    json: bool = False


#: The root options of the running invocation (one at a time: a CLI is one command per process,
#: and the root callback resets it, so in-process test runs do not leak into each other).
_current = Settings()


def settings(reset: bool = False) -> Settings:
    """This invocation's root options (fresh ones with ``reset``)."""
    global _current
    if reset:
        _current = Settings()
    return _current


def connect(as_json: bool) -> TaskForge:
    """A client from the root options (or TASKFORGE_URL / TASKFORGE_API_KEY)."""
    current = settings()
    current.json = as_json
    return TaskForge(current.url, current.api_key, timeout=current.timeout_s)


def connect_async(as_json: bool, http_client: httpx.AsyncClient | None = None) -> AsyncTaskForge:
    """The asyncio client, from the same options."""
    current = settings()
    current.json = as_json
    return AsyncTaskForge(
        current.url, current.api_key, timeout=current.timeout_s, http_client=http_client
    )


def exit_code(error: Exception) -> int:
    """The documented exit code of an error."""
    match error:
        case ConfigurationError() | BadRequest() | ValueError():
            return EXIT_USAGE
        case NotFound():
            return EXIT_NOT_FOUND
        case AuthenticationError() | PermissionDenied():
            return EXIT_AUTH
        case WaitTimeout():
            return EXIT_WAIT_TIMEOUT
        case _:
            return EXIT_SERVER


def one_line(error: Exception) -> str:
    """The error's message on one line (pydantic's span several)."""
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors()
        )
    return " ".join(str(error).split())


def fail(error: Exception) -> NoReturn:
    """Report ``error`` in one line (a JSON one with --json) and exit with its code."""
    code = exit_code(error)
    if settings().json:
        document: dict[str, Any] = {"error": one_line(error), "exit_code": code}
        if isinstance(error, ApiError):
            document["problem"] = error.problem.model_dump(mode="json", exclude_none=True)
        if isinstance(error, WaitTimeout):
            document["task"] = error.task.model_dump(mode="json")
        print(json.dumps(document), file=sys.stderr)
    else:
        err.print(f"taskforge: {one_line(error)}")
    raise typer.Exit(code)


class Root(TyperGroup):
    """The root command group: every client error becomes one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except (TaskForgeError, ValueError) as error:
            fail(error)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def emit(value: BaseModel | dict[str, Any]) -> None:
    """One JSON document on stdout."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    print(json.dumps(data), flush=True)


def cell(value: Any) -> str:
    """A table cell: None as a dash, times (UTC, as the server gives them) to the second."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
