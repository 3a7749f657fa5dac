"""The local stack: redis-server, api, gateway, worker and scheduler as processes.

``make up`` runs this module: it prints the gateway URL and an admin API key, streams every
process's log with a coloured prefix, and stops everything on Ctrl-C, SIGTERM or SIGHUP (its
terminal closed). The e2e tests start the same :class:`Stack` on free ports.

Every port of the local stack (Redis, api, gateway and each service's metrics and probe port)
listens on 127.0.0.1 only; pods in the chart keep binding every interface.

The children must never outlive the supervisor: each runs in a session of its own (so that
Ctrl-C reaches only the supervisor, which stops the services before Redis) and, on Linux, asks
the kernel for SIGTERM when the supervisor dies, so that even a SIGKILL of ``make up`` leaves no
orphan holding a port. Elsewhere the supervisor says at start-up that it cannot promise that.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from taskforge.redisconf import server_args

REPO = Path(__file__).resolve().parent.parent
COLOURS = {"redis": "31", "api": "32", "gateway": "36", "worker": "33", "scheduler": "35"}
REDIS_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/bin")
#: The only interface the local stack listens on.
LOOPBACK = "127.0.0.1"
#: What a child receives when the supervisor dies: the services shut down gracefully on it.
PARENT_DEATH_SIGNAL = signal.SIGTERM
#: Signals that stop the stack in order (SIGHUP: the terminal of ``make up`` was closed).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: prctl(2) option that sets the signal sent to a process when its parent thread dies.
_PR_SET_PDEATHSIG = 1


def parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child signalled when the supervisor dies; None off Linux.

    prctl is resolved here, in the parent, so that the forked child only makes one libc call.
    The kernel sends the signal when the *thread* that forked the child ends: start the stack
    from a thread that lives as long as the stack (the main thread in ``make up`` and pytest).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)
        # The supervisor may have died between fork and prctl: the kernel would not tell us.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` a moment ago (the kernel picks it; it may be taken since)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_redis_server(install: bool) -> str:
    """Path of redis-server; installed with apt-get when allowed and possible.

    Raises:
        SystemExit: it is missing and cannot be installed here (the message says how).
    """
    found = shutil.which("redis-server") or next(
        (f"{d}/redis-server" for d in REDIS_DIRS if os.access(f"{d}/redis-server", os.X_OK)), None
    )
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("redis-server not found: installing it with apt-get", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env)
        return find_redis_server(install=False)
    raise SystemExit(
        "redis-server is required. Install it (Debian/Ubuntu: sudo apt-get install redis-server;"
        " macOS: brew install redis) or put it on PATH, then run `make up` again."
    )


def new_api_key() -> str:
    """A fresh admin key in TaskForge's key format."""
    return "tfk_" + secrets.token_urlsafe(32)


@dataclass
class Stack:
    """The five processes of a local TaskForge, wired together."""

    gateway_port: int = 8080
    data_dir: Path = REPO / ".taskforge-dev"
    admin_key: str = field(
        default_factory=lambda: os.environ.get("TASKFORGE_BOOTSTRAP_API_KEY") or new_api_key()
    )
    quiet: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Each service's metrics (and probe) port on 127.0.0.1, by service name.
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://{LOOPBACK}:{self.gateway_port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start every process and wait until the gateway and api are ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        redis_port, api_port = free_port(), free_port()
        redis = find_redis_server(install=True)
        self._spawn("redis", [redis, "--port", str(redis_port), "--bind", LOOPBACK,
                              "--dir", str(self.data_dir), "--appendonly", "yes",
                              "--save", "", *server_args()], {})  # fmt: skip
        self._wait_for_redis(redis_port, timeout_s)
        base = {
            "TASKFORGE_REDIS_URL": f"redis://{LOOPBACK}:{redis_port}/0",
            "TASKFORGE_ENV": "dev",
            "TASKFORGE_LOG_FORMAT": "text",
            **self.extra_env,
        }
        token = secrets.token_urlsafe(32)
        self._service("api", {**base, "TASKFORGE_HOST": LOOPBACK, "TASKFORGE_PORT": str(api_port),
                              "TASKFORGE_INTERNAL_TOKEN": token})  # fmt: skip
        self._service("gateway", {**base, "TASKFORGE_HOST": LOOPBACK,
                                  "TASKFORGE_PORT": str(self.gateway_port),
                                  "TASKFORGE_API_URL": f"http://{LOOPBACK}:{api_port}",
                                  "TASKFORGE_INTERNAL_TOKEN": token,
                                  "TASKFORGE_BOOTSTRAP_API_KEY": self.admin_key})  # fmt: skip
        self._service("worker", base)
        self._service("scheduler", base)
        # The gateway is ready before the api may be: wait for both, or early calls get 502.
        self._wait_http(f"http://{LOOPBACK}:{api_port}/readyz", timeout_s)
        self._wait_http(f"{self.url}/readyz", timeout_s)

    def _service(self, name: str, env: dict[str, str]) -> None:
        # The metrics port also serves /healthz and /readyz; the services default to every
        # interface (what a pod needs), which a developer's machine must not expose.
        self.metrics_ports[name] = free_port()
        env = {
            **env,
            "TASKFORGE_METRICS_HOST": LOOPBACK,
            "TASKFORGE_METRICS_PORT": str(self.metrics_ports[name]),
        }
        self._spawn(name, [sys.executable, "-m", f"taskforge_{name}.main"], env)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
        proc = subprocess.Popen(
            argv,
            env={**clean, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            # Safe with the log threads running: the child only makes one libc call.
            preexec_fn=parent_death_hook(),
        )
        self.procs[name] = proc
        if proc.stdout is not None:
            threading.Thread(target=self._pump, args=(name, proc.stdout), daemon=True).start()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"\033[{COLOURS[name]}m{name:>9} |\033[0m "
        echo = not self.quiet
        for line in iter(stream.readline, b""):
            if not echo:
                continue  # keep draining: a child blocked on a full pipe would not stop
            try:
                sys.stdout.write(prefix + line.decode(errors="replace"))
                sys.stdout.flush()
            except (OSError, ValueError):  # the terminal is gone (SIGHUP) or stdout closed
                echo = False

    def _wait_for_redis(self, port: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {port}")

    def _wait_http(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every process (services first, Redis last), then SIGKILL stragglers."""
        order = [n for n in ("gateway", "api", "worker", "scheduler", "redis") if n in self.procs]
        for names in (order[:-1], order[-1:]):
            for name in names:
                if self.procs[name].poll() is None:
                    self.procs[name].send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for name in names:
                try:
                    self.procs[name].wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.procs[name].kill()
                    self.procs[name].wait()
        for proc in self.procs.values():
            if proc.stdout is not None:
                proc.stdout.close()


def main() -> int:
    """Run the stack in the foreground until Ctrl-C, SIGTERM or SIGHUP."""
    stack = Stack(gateway_port=int(os.environ.get("TASKFORGE_UP_PORT", "8080")))
    if data_dir := os.environ.get("TASKFORGE_UP_DIR"):
        stack.data_dir = Path(data_dir)
    if parent_death_hook() is None:
        print(
            f"make up: no parent-death signal on {sys.platform}: if this process is killed with"
            " SIGKILL, its services keep running",
            file=sys.stderr,
        )
    stopping = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stack.start()
        print(
            f"\nTaskForge is up.\n  gateway:   {stack.url}\n  admin key: {stack.admin_key}\n"
            f"  try:       curl -H 'Authorization: Bearer {stack.admin_key}' "
            f"{stack.url}/v1/queues\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping.wait(0.5):
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            if dead:
                print(f"{', '.join(dead)} exited; stopping the stack", file=sys.stderr)
                return 1
    except RuntimeError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
