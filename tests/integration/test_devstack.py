"""``make up`` (``python -m scripts.devstack``) as a real process on free ports.

Every port it opens listens on 127.0.0.1 only, and its five children never outlive it: not
when its terminal closes (SIGHUP to its process group), not when it is SIGKILLed (the kernel's
parent-death signal, Linux only like the rest of these tests, which read /proc).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.devstack import REPO
from tests.support.ports import Listener, children_of, free_port, listeners, port_is_free

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's"
)

#: Longest wait for the stack to come up, or to go away; generous for a loaded 2-core runner.
TIMEOUT_S = 60.0
#: Listening sockets each child opens: a service's port, its metrics/probe port, Redis's port.
EXPECTED_LISTENERS = {"redis": 1, "api": 2, "gateway": 2, "worker": 1, "scheduler": 1}
#: prctl(2): orphans of our descendants are re-parented to us, so that we can reap them.
PR_SET_CHILD_SUBREAPER = 36


def _role(cmdline: str) -> str:
    if "redis-server" in cmdline:
        return "redis"
    return next((name for name in EXPECTED_LISTENERS if f"taskforge_{name}.main" in cmdline), "?")


def _poll(predicate: Callable[[], object], what: str, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {TIMEOUT_S:g}s: {what}\n{describe()}")
        time.sleep(0.1)


@dataclass
class Supervisor:
    """A ``make up`` process in a process group of its own, as a shell would start it."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    children: dict[int, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_up(self) -> list[Listener]:
        """Wait for the banner and for every child's sockets; return those sockets."""

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"make up exited with {self.proc.returncode}\n{self.log()}")
            self.children = children_of(self.proc.pid)
            counts = {name: 0 for name in EXPECTED_LISTENERS}
            for sock in listeners(self.children):
                counts[_role(self.children[sock.pid])] += 1
            return "TaskForge is up" in self.log() and counts == EXPECTED_LISTENERS

        _poll(up, "the stack did not come up with every port open", self.log)
        return listeners(self.children)


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Orphaned descendants are re-parented to the test process (not to an init that may not
    reap them), so that the test can tell an exited child from a running one."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _reap(pids: list[int], sig: signal.Signals | None = None) -> None:
    """Reap those of ``pids`` that exited and were re-parented to us; ``sig`` them first."""
    for pid in pids:
        try:
            if sig is not None:
                os.kill(pid, sig)
            os.waitpid(pid, 0 if sig is not None else os.WNOHANG)
        except (ProcessLookupError, ChildProcessError):  # gone already, or not our child
            pass


@pytest.fixture
def supervisor(tmp_path: Path, subreaper: None) -> Iterator[Supervisor]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    env.update(TASKFORGE_UP_PORT=str(free_port()), TASKFORGE_UP_DIR=str(tmp_path / "data"))
    log_path = tmp_path / "make-up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.devstack"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    sup = Supervisor(proc, log_path)
    try:
        yield sup
    finally:
        # A failed test must not leak a stack: whatever still runs is killed and reaped.
        if proc.poll() is None:
            sup.children.update(children_of(proc.pid))
            proc.kill()
        proc.wait(10)
        _reap(list(sup.children), signal.SIGKILL)


def _assert_all_gone(sup: Supervisor, ports: set[int]) -> None:
    def gone() -> bool:
        _reap(list(sup.children))
        alive = [pid for pid in sup.children if Path(f"/proc/{pid}").exists()]
        return not alive and all(port_is_free(port) for port in ports)

    def state() -> str:
        alive = {pid: cmd for pid, cmd in sup.children.items() if Path(f"/proc/{pid}").exists()}
        busy = sorted(port for port in ports if not port_is_free(port))
        return f"still running: {alive}\nports still taken: {busy}\n{sup.log()}"

    _poll(gone, "children of make up outlived it", state)


def test_every_port_of_the_local_stack_listens_on_loopback_only(supervisor: Supervisor) -> None:
    sockets = supervisor.wait_up()

    assert len(sockets) == sum(EXPECTED_LISTENERS.values())
    assert {s.host for s in sockets} == {"127.0.0.1"}, sockets


def test_closing_the_terminal_stops_every_child_and_frees_their_ports(
    supervisor: Supervisor,
) -> None:
    ports = {s.port for s in supervisor.wait_up()}

    # What a closing terminal does: SIGHUP to the foreground process group.
    os.killpg(supervisor.proc.pid, signal.SIGHUP)

    assert supervisor.proc.wait(TIMEOUT_S) == 0, supervisor.log()
    _assert_all_gone(supervisor, ports)
    assert "Traceback" not in supervisor.log()


def test_children_die_with_a_sigkilled_supervisor(supervisor: Supervisor) -> None:
    ports = {s.port for s in supervisor.wait_up()}

    supervisor.proc.kill()  # no handler runs: only the kernel can tell the children

    assert supervisor.proc.wait(TIMEOUT_S) == -signal.SIGKILL
    _assert_all_gone(supervisor, ports)
