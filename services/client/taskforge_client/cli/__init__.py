"""The ``taskforge`` command line: tasks, queues, the DLQ and API keys, over the HTTP API.

Configuration: ``--url`` / ``TASKFORGE_URL`` (default ``http://127.0.0.1:8080``) and
``--api-key`` / ``TASKFORGE_API_KEY``. Exit codes are listed in ``_common``'s docstring and
docs/client.md.
"""

from __future__ import annotations

from typing import Annotated

import typer

from taskforge_client import __version__
from taskforge_client.cli import admin, bench, tasks
from taskforge_client.cli._common import Root, settings

app = typer.Typer(
    name="taskforge",
    cls=Root,
    help="TaskForge from the terminal: enqueue, inspect and manage tasks through the gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"taskforge {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    url: Annotated[
        str | None,
        typer.Option(envvar="TASKFORGE_URL", help="Gateway URL (else http://127.0.0.1:8080)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="TASKFORGE_API_KEY", show_envvar=True, help="API key."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version.")
    ] = False,
    timeout_s: Annotated[
        float, typer.Option("--request-timeout", help="Seconds per request.")
    ] = 30.0,
) -> None:
    """Options every command takes."""
    current = settings(reset=True)
    current.url, current.api_key, current.timeout_s = url, api_key, timeout_s


app.command()(tasks.enqueue)
app.command()(tasks.status)
app.command()(tasks.wait)
app.command()(tasks.cancel)
app.command()(admin.queues)
app.add_typer(admin.dlq, name="dlq")
app.add_typer(admin.keys, name="keys")
app.command()(bench.bench)


def main() -> None:
    """The ``taskforge`` executable."""
    app()
