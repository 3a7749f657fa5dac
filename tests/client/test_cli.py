"""The ``taskforge`` command line in-process (typer's runner), over real HTTP to the stack."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from scripts.devstack import Stack, free_port
from taskforge_client import TaskForge
from taskforge_client.cli import app

runner = CliRunner()


def run(stack: Stack, *args: str, key: str | None = None, stdin: str | None = None) -> Result:
    """``taskforge <args>`` with the stack's URL and (by default) its admin key."""
    argv = ["--url", stack.url, "--api-key", key or stack.admin_key, *args]
    return runner.invoke(
        app, argv, input=stdin, env={"TASKFORGE_URL": None, "TASKFORGE_API_KEY": None}
    )


def as_json(result: Result, code: int = 0) -> Any:
    assert result.exit_code == code, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def one_line_error(result: Result, code: int) -> str:
    """The exit code, and stderr as one readable line with no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("taskforge: ")
    return result.stderr


def test_enqueue_then_wait_and_status(stack: Stack) -> None:
    created = as_json(run(stack, "enqueue", "echo", '{"hello": "cli"}', "--json"))
    assert set(created) == {"id", "state", "created"} and created["created"] is True
    done = as_json(run(stack, "wait", created["id"], "--json"))
    assert (done["state"], done["result"]) == ("succeeded", {"hello": "cli"})
    assert {"id", "attempts", "events", "finished_at", "last_error"} <= set(done)
    human = run(stack, "status", created["id"])
    assert human.exit_code == 0 and "succeeded" in human.stdout and created["id"] in human.stdout
    # The gateway starts a trace for a request that brings none: its id is what to search by.
    assert f"trace id     {done['traceparent'].split('-')[1]}" in human.stdout


def test_enqueue_wait_of_a_dead_task_exits_1(stack: Stack) -> None:
    result = run(stack, "enqueue", "fail", '{"permanent": true}', "--max-retries", "0",
                 "--wait", "--json")  # fmt: skip
    task = as_json(result, code=1)
    assert task["state"] == "dead" and task["dead_reason"]
    assert run(stack, "status", task["id"]).exit_code == 1
    human = run(stack, "wait", task["id"])
    assert human.exit_code == 1 and "dead" in human.stdout


def test_payload_from_a_file_and_from_stdin(stack: Stack, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"from": "file"}')
    by_file = as_json(run(stack, "enqueue", "echo", "-f", str(payload), "--wait", "--json"))
    assert by_file["result"] == {"from": "file"}
    by_stdin = as_json(run(stack, "enqueue", "echo", "-", "--wait", "--json", stdin='[1, "x"]'))
    assert by_stdin["result"] == [1, "x"]


def test_bad_payload_and_bad_options_are_usage_errors(stack: Stack) -> None:
    assert "not JSON" in one_line_error(run(stack, "enqueue", "echo", "{nope"), 2)
    refused = one_line_error(run(stack, "enqueue", "echo", "--max-retries", "-1"), 2)
    assert "422" in refused and "max_retries" in refused
    assert run(stack, "enqueue").exit_code == 2  # no TYPE: typer's own usage error


def test_missing_task_exits_3_with_the_problem(stack: Stack) -> None:
    missing = "default.0123456789abcdef0123456789abcdef"
    assert "404 task-not-found" in one_line_error(run(stack, "status", missing), 3)
    machine = run(stack, "cancel", missing, "--json")
    assert machine.exit_code == 3 and machine.stdout == ""
    error = json.loads(machine.stderr)
    assert error["exit_code"] == 3 and error["problem"]["status"] == 404


def test_keys_and_a_revoked_key_exits_4(stack: Stack) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    new = as_json(run(stack, "keys", "create", "--name", name, "--scopes", "tasks:read", "--json"))
    assert new["key"].startswith("tfk_") and new["scopes"] == ["tasks:read"]
    listed = as_json(run(stack, "keys", "list", "--json"))["items"]
    assert any(k["id"] == new["id"] and not k["revoked"] for k in listed)
    assert "queues" in as_json(run(stack, "queues", "--json", key=new["key"]))
    assert "403" in one_line_error(run(stack, "dlq", "list", key=new["key"]), 4)
    assert as_json(run(stack, "keys", "revoke", new["id"], "--json")) == {
        "id": new["id"], "revoked": True,
    }  # fmt: skip
    assert "401" in one_line_error(run(stack, "queues", key=new["key"]), 4)
    assert "no API key" in one_line_error(run(stack, "keys", "revoke", "000000000000"), 3)


def test_configuration_and_unreachable(stack: Stack) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    clean = {"TASKFORGE_URL": None, "TASKFORGE_API_KEY": None}
    no_key = runner.invoke(app, ["--url", stack.url, "queues"], env=clean)
    assert "TASKFORGE_API_KEY" in one_line_error(no_key, 2)
    down = runner.invoke(app, ["queues"], env={"TASKFORGE_URL": nowhere, "TASKFORGE_API_KEY": "k"})
    assert "no answer" in one_line_error(down, 5)


def test_queues_table_and_json(stack: Stack, queue: str) -> None:
    with TaskForge(stack.url, stack.admin_key) as client:
        client.enqueue("echo", queue=queue)
    listed = as_json(run(stack, "queues", "--json"))["queues"]
    mine = next(q for q in listed if q["queue"] == queue)
    assert mine["queued"] == 1 and set(mine) >= {"scheduled", "running", "dead", "counters"}
    table = run(stack, "queues")
    assert table.exit_code == 0 and queue in table.stdout


def test_cancel(stack: Stack, queue: str) -> None:
    created = as_json(run(stack, "enqueue", "echo", "-q", queue, "--delay", "3600", "--json"))
    assert as_json(run(stack, "cancel", created["id"], "--json")) == {
        "id": created["id"], "status": "cancelled",
    }  # fmt: skip


def test_dlq_list_show_requeue_purge(stack: Stack) -> None:
    dead = as_json(run(stack, "enqueue", "fail", '{"permanent": true, "message": "boom"}',
                       "--max-retries", "0", "--wait", "--json"), code=1)  # fmt: skip
    page = as_json(run(stack, "dlq", "list", "-q", "default", "--type", "fail", "--limit", "500",
                       "--json"))  # fmt: skip
    assert dead["id"] in [t["id"] for t in page["items"]] and page["total"] >= 1
    assert dead["id"] in run(stack, "dlq", "list", "-q", "default", "--limit", "500").stdout
    shown = run(stack, "dlq", "show", dead["id"])
    assert shown.exit_code == 0 and "boom" in shown.stdout
    assert as_json(run(stack, "dlq", "requeue", dead["id"], "--json")) == {"count": 1}
    assert as_json(run(stack, "wait", dead["id"], "--json"), code=1)["state"] == "dead"
    unconfirmed = run(stack, "dlq", "purge", "-q", "default")  # stdin is no terminal: refuse
    assert "--yes" in one_line_error(unconfirmed, 2)
    assert one_line_error(run(stack, "dlq", "purge", "--yes"), 2)  # neither queue nor --all
    assert as_json(run(stack, "dlq", "purge", "-q", "default", "--yes", "--json"))["count"] >= 1
    after = as_json(run(stack, "dlq", "list", "-q", "default", "--limit", "500", "--json"))
    assert dead["id"] not in [t["id"] for t in after["items"]]


def test_bench_reports_rate_and_latency_percentiles(stack: Stack) -> None:
    report = as_json(run(stack, "bench", "-n", "30", "-c", "4", "--json"))
    assert (report["tasks"], report["enqueued"], report["errors"]) == (30, 30, {})
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert report["enqueue_per_s"] > 0 and report["drained_per_s"] > 0
    human = run(stack, "bench", "-n", "5", "-c", "2", "--drain-timeout", "0")
    assert human.exit_code == 0 and "tasks/s" in human.stdout and "p99" in human.stdout


@pytest.mark.parametrize("argv", [["--help"], ["dlq", "--help"], ["keys", "--help"]])
def test_help_needs_no_configuration(argv: list[str]) -> None:
    result = runner.invoke(app, argv, env={"TASKFORGE_API_KEY": None})
    assert result.exit_code == 0 and "Usage" in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["enqueue", "echo", "--eta", "tomorrow"], "Invalid isoformat"),
        (["enqueue", "echo", "--backoff", "linear"], "kind"),
        (["enqueue", "echo", "{}", "-f", "x.json"], "not both"),
        (["dlq", "requeue"], "queue"),
        (["bench", "--payload", "{", "-n", "1"], "Expecting"),
    ],
)
def test_bad_input_is_one_line_exit_2(stack: Stack, argv: list[str], message: str) -> None:
    assert message in one_line_error(run(stack, *argv), 2)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("taskforge 0.")
