"""``enqueue``, ``status``, ``wait``, ``cancel``."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from taskforge_client.cli._common import (
    EXIT_TASK_FAILED,
    Json,
    cell,
    connect,
    emit,
    err,
    out,
)
from taskforge_client.client import TaskForge
from taskforge_client.models import Backoff, Task, TaskState

#: Where ``wait`` ends: success exits 0, anything else 1.
_FAILED_FINISH = (TaskState.DEAD, TaskState.CANCELLED)


def read_payload(text: str | None, file: Path | None) -> Any:
    """The payload: JSON from the argument, a file, or stdin (``-``); ``{}`` when none.

    Raises:
        ValueError: both given, or not JSON (exit 2).
    """
    if text is not None and file is not None:
        raise ValueError("give the payload as an argument or with --file, not both")
    if file is not None:
        source = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    elif text == "-":
        source = sys.stdin.read()
    elif text is not None:
        source = text
    else:
        return {}
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the payload is not JSON: {exc}") from None


def backoff_of(kind: str | None, base_s: float | None) -> Backoff | None:
    """The retry backoff the options ask for; None leaves it to the handler and server."""
    if kind is None and base_s is None:
        return None
    fields: dict[str, Any] = {"kind": kind or "exponential"}
    if base_s is not None:
        fields["base_s"] = base_s
    return Backoff.model_validate(fields)


def wait_visibly(client: TaskForge, task_id: str, timeout_s: float, as_json: bool) -> Task:
    """Wait for the task, with a spinner showing its state (on stderr, not with --json)."""
    if as_json or not err.is_terminal:
        return client.wait(task_id, timeout_s=timeout_s)
    with err.status(f"{task_id}: waiting") as spinner:

        def show(task: Task) -> None:
            spinner.update(f"{task_id}: {task.state} (attempt {task.attempts})")

        return client.wait(task_id, timeout_s=timeout_s, on_poll=show)


def show_task(task: Task, *, traceback: bool = False) -> None:
    """A task as a two-column table, then its event log."""
    table = Table(show_header=False, box=None)
    rows: list[tuple[str, Any]] = [
        ("id", task.id), ("queue", task.queue), ("type", task.type), ("state", task.state),
        ("attempts", task.attempts), ("created", task.created_at), ("started", task.started_at),
        ("finished", task.finished_at), ("dead reason", task.dead_reason),
        ("last error", task.last_error),
        ("result", None if task.result is None else json.dumps(task.result)),
        ("trace id", trace_id(task.traceparent)),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, cell(value))
    out.print(table)
    if task.events:
        events = Table("at", "event", "attempt", "error", box=None)
        for event in task.events:
            events.add_row(cell(event.at), event.event, cell(event.attempt), cell(event.error))
        out.print(events)
    if traceback and task.traceback:
        out.print(task.traceback)


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C ``traceparent`` (what a trace backend is searched by)."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def finish(task: Task, as_json: bool) -> None:
    """Print a finished task; exit 1 unless it succeeded."""
    if as_json:
        emit(task)
    elif task.state is TaskState.SUCCEEDED:
        out.print(f"{task.id} succeeded: {json.dumps(task.result)}")
    else:
        reason = f" ({task.dead_reason})" if task.dead_reason else ""
        out.print(f"{task.id} {task.state}{reason}: {task.last_error or '-'}")
    if task.state in _FAILED_FINISH:
        raise typer.Exit(EXIT_TASK_FAILED)


def enqueue(
    task_type: Annotated[str, typer.Argument(metavar="TYPE", help="Handler name.")],
    payload: Annotated[
        str | None, typer.Argument(help="JSON payload; - reads stdin.", show_default=False)
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Read the JSON payload from a file (- for stdin)."),
    ] = None,
    queue: Annotated[str, typer.Option("--queue", "-q")] = "default",
    delay_s: Annotated[
        float | None, typer.Option("--delay", help="Seconds before it runs.")
    ] = None,
    eta: Annotated[
        str | None, typer.Option(help="Run at this RFC 3339 time, e.g. 2030-01-01T09:00:00Z.")
    ] = None,
    max_retries: Annotated[int | None, typer.Option("--max-retries")] = None,
    backoff: Annotated[str | None, typer.Option(help="fixed or exponential.")] = None,
    backoff_base_s: Annotated[float | None, typer.Option("--backoff-base")] = None,
    timeout_s: Annotated[
        float | None, typer.Option("--task-timeout", help="Seconds per attempt.")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Wait until it finishes.")] = False,
    wait_timeout: Annotated[float, typer.Option("--wait-timeout", help="Seconds.")] = 300.0,
    as_json: Json = False,
) -> None:
    """Enqueue a task; print its id (or, with --wait, how it ended)."""
    policy = backoff_of(backoff, backoff_base_s)
    with connect(as_json) as client:
        created = client.enqueue(
            task_type, read_payload(payload, file), queue=queue, delay_s=delay_s,
            eta=None if eta is None else datetime.fromisoformat(eta),
            max_retries=max_retries, backoff=policy, timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )  # fmt: skip
        if wait:
            finish(wait_visibly(client, created.id, wait_timeout, as_json), as_json)
        elif as_json:
            emit(created)
        else:
            out.print(created.id if created.created else f"{created.id} (already enqueued)")


def status(task_id: Annotated[str, typer.Argument(metavar="ID")], as_json: Json = False) -> None:
    """Show a task: state, attempts, times, error, result, events. Exit 1 if failed or dead."""
    with connect(as_json) as client:
        task = client.get(task_id)
    if as_json:
        emit(task)
    else:
        show_task(task)
    if task.state in (TaskState.FAILED, TaskState.DEAD):
        raise typer.Exit(EXIT_TASK_FAILED)


def wait(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds.")] = 300.0,
    as_json: Json = False,
) -> None:
    """Wait until a task succeeds (exit 0), or is dead or cancelled (exit 1)."""
    with connect(as_json) as client:
        finish(wait_visibly(client, task_id, timeout_s, as_json), as_json)


def cancel(task_id: Annotated[str, typer.Argument(metavar="ID")], as_json: Json = False) -> None:
    """Cancel a waiting task, or ask its worker to stop a running one."""
    with connect(as_json) as client:
        result = client.cancel(task_id)
    if as_json:
        emit(result)
    else:
        out.print(f"{result.id} {result.status}")
