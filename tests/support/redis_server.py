"""Private ``redis-server`` processes for tests.

Every server is a child process of the test run, bound to 127.0.0.1 on its own port, with its
own data directory and, unless ``extra_args`` say otherwise, no persistence (``--save ""
--appendonly no``). Nothing here ever talks to a shared or system Redis.

Typical use in a test that needs a server of its own::

    with RedisServer(dir=tmp_path, extra_args=["--appendonly", "yes"]) as server:
        ...                      # server.url, server.port, server.proc
        server.restart(kill=True)  # SIGKILL, then start again on the same port and dir
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from taskforge.redisconf import server_args
from tests.support.ports import free_port

#: Directories searched for ``redis-server`` when it is not on ``PATH`` (Debian puts it in
#: /usr/bin; some images only have /usr/sbin on root's PATH or vice versa).
SEARCH_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/bin", "/usr/local/bin")

#: Environment variable that, when set, names the ``redis-server`` binary to use.
BINARY_ENV = "REDIS_SERVER_BIN"

INSTALL_HINT = (
    "redis-server is required for these tests but was not found on PATH or in "
    f"{', '.join(SEARCH_DIRS)}. Install it with `make bootstrap` (as root on Debian/Ubuntu it "
    "runs `apt-get install -y redis-server`), or set REDIS_SERVER_BIN to its path."
)

_LOG_NAME = "redis-server.log"


class RedisServerError(RuntimeError):
    """A test Redis server could not be found, started or stopped."""


class _PortInUseError(RedisServerError):
    """The server exited because its port was taken."""


def find_redis_server() -> str | None:
    """Return the path of the ``redis-server`` binary, or ``None`` if there is none."""
    override = os.environ.get(BINARY_ENV)
    if override:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which("redis-server")
    if found:
        return found
    for directory in SEARCH_DIRS:
        candidate = os.path.join(directory, "redis-server")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_redis_server() -> str:
    """Return the path of ``redis-server``; raise :class:`RedisServerError` if missing."""
    binary = find_redis_server()
    if binary is None:
        override = os.environ.get(BINARY_ENV)
        if override:
            raise RedisServerError(f"{BINARY_ENV}={override} is not an executable file")
        raise RedisServerError(INSTALL_HINT)
    return binary


def _encode_command(*parts: str) -> bytes:
    """Encode a command as a RESP array of bulk strings."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_line(sock: socket.socket, limit: int = 4096) -> bytes:
    """Read one CRLF-terminated reply line (without the CRLF)."""
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk or len(buf) > limit:
            break
        buf += chunk
    return buf.rstrip(b"\r\n")


def _read_bulk(sock: socket.socket) -> bytes:
    """Read one RESP bulk-string reply."""
    header = _read_line(sock)
    if not header.startswith(b"$"):
        raise ValueError(f"expected a bulk string, got {header!r}")
    remaining = int(header[1:]) + 2
    chunks: list[bytes] = []
    while remaining > 0:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise ValueError("connection closed mid-reply")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)[:-2]


class RedisServer:
    """One private ``redis-server`` child process.

    Args:
        port: TCP port to listen on. ``None`` picks a free port; if that port is snatched
            before the server binds it, ``start`` retries with another one. Once the server
            has started, the port is kept for every later ``restart``.
        dir: data directory (``--dir``), also holding ``redis-server.log``. ``None`` creates
            a temporary directory that :meth:`close` removes.
        extra_args: further ``redis-server`` arguments, appended last so they override the
            defaults, e.g. ``["--appendonly", "yes", "--appendfsync", "always"]``.
        host: address to bind and connect to.
        password: if set, passed as ``--requirepass`` and put into :attr:`url`.
        binary: path of ``redis-server``; found with :func:`find_redis_server` by default.
        start_timeout: seconds to wait for the server to answer ``PING``.
    """

    def __init__(
        self,
        port: int | None = None,
        dir: Path | str | None = None,
        extra_args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        password: str | None = None,
        binary: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port: int = port if port is not None else free_port(host)
        self._port_is_fixed = port is not None
        self._owns_dir = dir is None
        self.dir: Path = (
            Path(tempfile.mkdtemp(prefix="taskforge-redis-")) if dir is None else Path(dir)
        )
        self.extra_args: list[str] = list(extra_args)
        self.password = password
        self.binary = binary
        self.start_timeout = start_timeout
        #: The current (or last) server process; ``None`` before the first ``start``.
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://[:password@]host:port/0``."""
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """The server's log file (stdout and stderr of every start, appended)."""
        return self.dir / _LOG_NAME

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be loading data)."""
        return self.proc is not None and self.proc.poll() is None

    def command_line(self) -> list[str]:
        """The full ``redis-server`` command line for the next start."""
        args = [
            self.binary or require_redis_server(),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", "",
            *server_args(),  # the tuning production runs with (taskforge.redisconf)
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it answers ``PING``.

        Raises:
            RedisServerError: the binary is missing, the server exited, or it did not
                answer within ``start_timeout`` seconds; the message includes its log.
        """
        if self.running:
            raise RedisServerError(f"redis-server on port {self.port} is already running")
        attempts = 1 if self._port_is_fixed else 5
        for attempt in range(1, attempts + 1):
            try:
                self._spawn_and_wait()
            except _PortInUseError:
                if attempt == attempts:
                    raise
                self.port = free_port(self.host)
            else:
                self._port_is_fixed = True
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the server; a no-op if it is not running.

        Args:
            kill: send SIGKILL (a crash: no shutdown save, no final AOF fsync) instead of
                SIGTERM (a clean shutdown).
            timeout: seconds to wait for a SIGTERM to take effect before falling back to
                SIGKILL.
        """
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            if kill:
                proc.kill()
            else:
                # A SIGSTOPped server (chaos tests) would never act on SIGTERM.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        else:
            proc.wait()

    def restart(self, kill: bool = False) -> Self:
        """Stop (SIGKILL if ``kill``, else SIGTERM) and start again on the same port and dir."""
        self.stop(kill=kill)
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its directory if this object created it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- probing -------------------------------------------------------------------------

    def ping(self, timeout: float = 1.0) -> bool:
        """Whether a server on this port answers ``PING`` (``False`` while it is loading)."""
        return self._probe(timeout) is not None

    def _probe(self, timeout: float) -> int | None:
        """The ``process_id`` of the server answering on this port, if one answers PING.

        Comparing it with our child's pid tells our server apart from a stranger that took
        the port (the start then waits for our child to fail with "Address already in use").
        """
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                if self.password is not None:
                    sock.sendall(_encode_command("AUTH", self.password))
                    if not _read_line(sock).startswith(b"+OK"):
                        return None
                sock.sendall(_encode_command("PING"))
                if not _read_line(sock).startswith(b"+PONG"):
                    return None
                sock.sendall(_encode_command("INFO", "server"))
                info = _read_bulk(sock)
        except (OSError, ValueError):
            return None
        match = re.search(rb"^process_id:(\d+)", info, re.MULTILINE)
        return int(match.group(1)) if match else None

    def log_text(self, since_last_start: bool = False) -> str:
        """The server log, whole or only what the latest start wrote."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        if since_last_start:
            data = data[self._log_offset :]
        return data.decode(errors="replace")

    # -- internals -----------------------------------------------------------------------

    def _spawn_and_wait(self) -> None:
        args = self.command_line()
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"=== taskforge tests: starting {' '.join(args)}\n".encode())
            log.flush()
            # The child keeps its own copy of the descriptor; ours closes with the block.
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._raise_exited(self.proc.returncode)
            if self._probe(timeout=0.5) == self.proc.pid:
                return
            time.sleep(0.05)
        self.stop(kill=True)
        raise RedisServerError(
            f"redis-server on {self.host}:{self.port} did not answer PING within "
            f"{self.start_timeout:g}s; log ({self.log_path}):\n{self.log_text(True)}"
        )

    def _raise_exited(self, returncode: int) -> None:
        log = self.log_text(since_last_start=True)
        if not self._port_is_fixed and "Address already in use" in log:
            raise _PortInUseError(f"port {self.port} was taken:\n{log}")
        raise RedisServerError(
            f"redis-server on {self.host}:{self.port} exited with status {returncode} "
            f"during startup; log ({self.log_path}):\n{log}"
        )
