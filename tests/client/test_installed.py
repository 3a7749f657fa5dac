"""``pip install services/client`` into an empty virtualenv gives a working ``taskforge``.

The virtualenv has none of the server packages: the client stands alone. Installing goes
through uv (``uv pip install``, what ``make`` already has) because it reuses its cache and
takes about 10 s here; plain pip does the same from PyPI in about 17 s (docs/client.md).
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.devstack import REPO, Stack

PACKAGE = REPO / "services" / "client"


@pytest.fixture(scope="module")
def taskforge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``taskforge`` executable of a fresh virtualenv holding only the client."""
    venv = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed to install the client (make bootstrap installs it)")
    python = venv / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), str(PACKAGE)],
                   check=True, timeout=180)  # fmt: skip
    alone = subprocess.run([python, "-c", "import taskforge"], capture_output=True, check=False)
    assert alone.returncode != 0, "the server packages must not come with the client"
    return venv / "bin" / "taskforge"


def cli(taskforge: Path, stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    env |= {"TASKFORGE_URL": stack.url, "TASKFORGE_API_KEY": stack.admin_key}
    return subprocess.run([taskforge, *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_enqueue_and_wait_with_the_installed_command(taskforge: Path, stack: Stack) -> None:
    done = cli(taskforge, stack, "enqueue", "echo", '{"from": "venv"}', "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"from": "venv"}


def test_errors_are_one_line_and_exit_codes_hold(taskforge: Path, stack: Stack) -> None:
    missing = cli(taskforge, stack, "status", "default.0123456789abcdef0123456789abcdef")
    assert missing.returncode == 3
    assert missing.stderr.startswith("taskforge: 404") and missing.stderr.count("\n") == 1
    usage = cli(taskforge, stack, "dlq", "requeue", "--limit", "0")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_queues_watch_refreshes_until_ctrl_c(taskforge: Path, stack: Stack) -> None:
    env = {**os.environ, "TASKFORGE_URL": stack.url, "TASKFORGE_API_KEY": stack.admin_key}
    argv = [taskforge, "queues", "--watch", "--interval", "0.2", "--json"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    with subprocess.Popen(argv, env=env, **pipes) as watch:  # type: ignore[call-overload]
        try:
            refreshes = [json.loads(watch.stdout.readline()) for _ in range(3)]
            assert all("queues" in r for r in refreshes)
            watch.send_signal(signal.SIGINT)
            assert watch.wait(15) == 0
            assert "Traceback" not in watch.stderr.read()
        finally:
            if watch.poll() is None:
                watch.kill()


def read_all(fd: int) -> str:
    """Everything a pseudo-terminal's program wrote, until it closed its side."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the program's side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_wait_in_a_terminal_shows_the_state_on_a_spinner(taskforge: Path, stack: Stack) -> None:
    env = {**os.environ, "TASKFORGE_URL": stack.url, "TASKFORGE_API_KEY": stack.admin_key}
    controller, terminal = pty.openpty()
    argv = [str(taskforge), "enqueue", "sleep", '{"seconds": 0.5}', "--wait"]
    with subprocess.Popen(argv, env=env, stdin=terminal, stdout=terminal, stderr=terminal) as run:
        os.close(terminal)
        screen = read_all(controller)
        assert run.wait(30) == 0, screen
    os.close(controller)
    assert "(attempt 1)" in screen  # the spinner's line: state and attempt
    assert "succeeded:" in screen and "Traceback" not in screen
