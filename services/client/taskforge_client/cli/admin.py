"""``queues``, ``dlq list|show|requeue|purge``, ``keys create|list|revoke``."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Column, Table

from taskforge_client.cli._common import EXIT_USAGE, Json, cell, connect, emit, err, out
from taskforge_client.cli.tasks import show_task
from taskforge_client.client import TaskForge
from taskforge_client.models import QueueStats

dlq = typer.Typer(help="Dead tasks (admin key).", no_args_is_help=True)
keys = typer.Typer(
    help="API keys, through the gateway's /v1/keys (admin key).", no_args_is_help=True
)

QueueOpt = Annotated[str | None, typer.Option("--queue", "-q", help="One queue.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every queue.")]


def id_column(ids: list[str], name: str = "id") -> Column:
    """A column that shows ids whole: they are copied from the screen into the next command."""
    return Column(name, no_wrap=True, min_width=max([len(name), *map(len, ids)]))


def time_column(name: str) -> Column:
    """A column of times, each on one line."""
    return Column(name, no_wrap=True, min_width=19)


def queue_table(stats: list[QueueStats]) -> Table:
    """Queues with depths per state, the oldest waiting task and lifetime counters."""
    columns = ("queued", "scheduled", "running", "dead", "oldest (s)", "enqueued", "succeeded")
    table = Table(id_column([q.queue for q in stats], "queue"), *columns,
                  title=f"{len(stats)} queues")  # fmt: skip
    for q in stats:
        table.add_row(
            q.queue, str(q.queued), str(q.scheduled), str(q.running), str(q.dead),
            f"{q.oldest_queued_age_s:.1f}", str(q.counters.get("enqueued", 0)),
            str(q.counters.get("succeeded", 0)),
        )  # fmt: skip
    return table


def _watch(client: TaskForge, interval_s: float, as_json: bool) -> None:
    # Until Ctrl-C (exit 0): a live table, or one JSON document per refresh.
    try:
        if as_json:
            while True:
                emit({"queues": [q.model_dump(mode="json") for q in client.queues()]})
                time.sleep(interval_s)
        with Live(queue_table(client.queues()), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(interval_s)
                live.update(queue_table(client.queues()), refresh=True)
    except KeyboardInterrupt:
        return


def queues(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until Ctrl-C.")] = False,
    interval_s: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds.")] = 2.0,
    as_json: Json = False,
) -> None:
    """Every queue: depths per state, oldest waiting task, counters."""
    with connect(as_json) as client:
        if watch:
            _watch(client, interval_s, as_json)
        elif as_json:
            emit({"queues": [q.model_dump(mode="json") for q in client.queues()]})
        else:
            out.print(queue_table(client.queues()))


@dlq.command("list")
def dlq_list(
    queue: QueueOpt = None,
    task_type: Annotated[str | None, typer.Option("--type")] = None,
    reason: Annotated[str | None, typer.Option(help="e.g. retries_exhausted.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: Json = False,
) -> None:
    """A page of dead tasks, oldest death first."""
    with connect(as_json) as client:
        page = client.dlq.list(
            queue, task_type=task_type, reason=reason, cursor=cursor, limit=limit
        )
    if as_json:
        emit(page)
        return
    title = f"{len(page.items)} of {page.total} dead tasks"
    table = Table(id_column([t.id for t in page.items]), "type", "reason", "attempts",
                  time_column("died"), "last error", title=title)  # fmt: skip
    for task in page.items:
        error = (task.last_error or "-").splitlines()[0][:60] if task.last_error else "-"
        table.add_row(task.id, task.type, cell(task.dead_reason), str(task.attempts),
                      cell(task.finished_at), error)  # fmt: skip
    out.print(table)
    if page.next_cursor:
        out.print(f"more: --cursor {page.next_cursor}")


@dlq.command("show")
def dlq_show(task_id: Annotated[str, typer.Argument(metavar="ID")], as_json: Json = False) -> None:
    """One dead task in full, traceback included."""
    with connect(as_json) as client:
        task = client.get(task_id)
    if as_json:
        emit(task)
    else:
        show_task(task, traceback=True)


@dlq.command("requeue")
def dlq_requeue(
    task_id: Annotated[str | None, typer.Argument(metavar="[ID]", show_default=False)] = None,
    queue: QueueOpt = None,
    everything: AllOpt = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    as_json: Json = False,
) -> None:
    """Requeue one dead task (ID), or those of --queue or --all, with a fresh retry budget."""
    with connect(as_json) as client:
        count = client.dlq.requeue(task_id, queue=queue, all=everything, limit=limit)
    if as_json:
        emit({"count": count})
    else:
        out.print(f"requeued {count}")


@dlq.command("purge")
def dlq_purge(
    queue: QueueOpt = None,
    everything: AllOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: Json = False,
) -> None:
    """Delete the dead tasks of --queue or --all; asks first unless --yes."""
    with connect(as_json) as client:
        if not yes:
            if not sys.stdin.isatty():
                err.print("taskforge: purge deletes for good: confirm with --yes")
                raise typer.Exit(EXIT_USAGE)
            what = "every queue" if everything else f"queue {queue}"
            if not typer.confirm(f"Delete the dead tasks of {what}?", err=True):
                err.print("nothing purged")
                return
        count = client.dlq.purge(queue, all=everything)
    if as_json:
        emit({"count": count})
    else:
        out.print(f"purged {count}")


@keys.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: tasks:write, tasks:read, admin.")],
    rate_per_s: Annotated[float | None, typer.Option("--rate-per-s")] = None,
    burst: Annotated[int | None, typer.Option()] = None,
    as_json: Json = False,
) -> None:
    """Create a key and print it: it is shown this once."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    with connect(as_json) as client:
        new = client.keys.create(name, wanted, rate_per_s=rate_per_s, burst=burst)
    if as_json:
        emit(new)
        return
    out.print(f"key: {new.key}")
    out.print(f"id: {new.id}")
    err.print("Store the key now: it is not shown again.")


@keys.command("list")
def keys_list(as_json: Json = False) -> None:
    """Every key with its scopes, limits and last use (never a secret)."""
    with connect(as_json) as client:
        items = client.keys.list()
    if as_json:
        emit({"items": [k.model_dump(mode="json") for k in items]})
        return
    table = Table(id_column([k.id for k in items]), "name", "scopes", "rate/s", "burst",
                  time_column("created"), "revoked", time_column("last used"))  # fmt: skip
    for k in items:
        table.add_row(k.id, k.name, ",".join(k.scopes), cell(k.rate_per_s or "default"),
                      cell(k.burst or "default"), cell(k.created_at), "yes" if k.revoked else "no",
                      cell(k.last_used_at))  # fmt: skip
    out.print(table)


@keys.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID")], as_json: Json = False
) -> None:
    """Revoke a key; every gateway replica refuses it within seconds."""
    with connect(as_json) as client:
        client.keys.revoke(key_id)
    if as_json:
        emit({"id": key_id, "revoked": True})
    else:
        out.print(f"revoked {key_id}")
