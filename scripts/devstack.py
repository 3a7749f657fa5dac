"""The local stack: redis-server, api, gateway, worker and scheduler as processes.

``make up`` runs this module: it prints the gateway URL and an admin API key, streams every
process's log with a coloured prefix, and stops everything on Ctrl-C or SIGTERM. The e2e
tests start the same :class:`Stack` on free ports.
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
COLOURS = {"redis": "31", "api": "32", "gateway": "36", "worker": "33", "scheduler": "35"}
REDIS_DIRS = ("/usr/sbin", "/usr/bin", "/usr/local/bin")


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

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.gateway_port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start every process and wait until the gateway and api are ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        redis_port, api_port = free_port(), free_port()
        redis = find_redis_server(install=True)
        self._spawn("redis", [redis, "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--dir", str(self.data_dir), "--appendonly", "yes",
                              "--save", ""], {})  # fmt: skip
        self._wait_for_redis(redis_port, timeout_s)
        base = {
            "TASKFORGE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "TASKFORGE_ENV": "dev",
            "TASKFORGE_LOG_FORMAT": "text",
            **self.extra_env,
        }
        token = secrets.token_urlsafe(32)
        self._service("api", {**base, "TASKFORGE_PORT": str(api_port),
                              "TASKFORGE_INTERNAL_TOKEN": token})  # fmt: skip
        self._service("gateway", {**base, "TASKFORGE_PORT": str(self.gateway_port),
                                  "TASKFORGE_API_URL": f"http://127.0.0.1:{api_port}",
                                  "TASKFORGE_INTERNAL_TOKEN": token,
                                  "TASKFORGE_BOOTSTRAP_API_KEY": self.admin_key})  # fmt: skip
        self._service("worker", base)
        self._service("scheduler", base)
        # The gateway is ready before the api may be: wait for both, or early calls get 502.
        self._wait_http(f"http://127.0.0.1:{api_port}/readyz", timeout_s)
        self._wait_http(f"{self.url}/readyz", timeout_s)

    def _service(self, name: str, env: dict[str, str]) -> None:
        env = {**env, "TASKFORGE_METRICS_PORT": str(free_port())}
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
        )
        self.procs[name] = proc
        if proc.stdout is not None:
            threading.Thread(target=self._pump, args=(name, proc.stdout), daemon=True).start()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"\033[{COLOURS[name]}m{name:>9} |\033[0m "
        for line in iter(stream.readline, b""):
            if not self.quiet:
                sys.stdout.write(prefix + line.decode(errors="replace"))
                sys.stdout.flush()

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
    """Run the stack in the foreground until Ctrl-C or SIGTERM."""
    stack = Stack(gateway_port=int(os.environ.get("TASKFORGE_UP_PORT", "8080")))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
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
