"""A small HTTP server for ``/healthz``, ``/readyz`` and ``/metrics``, on its own thread.

It runs beside the service's event loop rather than on it, so that a blocked loop makes
``/healthz`` answer 503 with the reason instead of not answering at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from taskforge.settings.base import CoreSettings

#: A check returns None when fine, else the reason it fails.
Check = Callable[[], str | None]

log = logging.getLogger(__name__)

#: Seconds a readiness probe waits for Redis.
READY_TIMEOUT_S = 1.0


def redis_check(settings: CoreSettings) -> Check:
    """A readiness check: Redis answers PING, through a sync client of its own.

    The health server runs on its own thread, so it cannot share the service's asyncio client.
    """
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    client = Redis.from_url(
        settings.redis_url,
        password=password,
        socket_timeout=READY_TIMEOUT_S,
        socket_connect_timeout=READY_TIMEOUT_S,
        # One try: a probe must answer within its own timeout, not after backoff rounds.
        retry=Retry(NoBackoff(), 0),
    )

    def ready() -> str | None:
        try:
            client.ping()
        except (RedisError, OSError) as exc:
            return f"Redis does not answer: {exc}"
        return None

    return ready


class HealthServer:
    """Serves liveness, readiness and metrics until :meth:`stop`."""

    def __init__(self, host: str, port: int, *, live: Check, ready: Check) -> None:
        checks = {"/healthz": live, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif path in checks:
                    reason = checks[path]()
                    body = (reason or "ok").encode() + b"\n"
                    self._send(200 if reason is None else 503, body, "text/plain")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Probes every few seconds would drown the service's own logs."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start serving on a daemon thread."""
        self._thread.start()
        log.info("health and metrics on port %d", self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
