"""``taskforge-gateway``: the gateway's entrypoint, locally and in its image."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from taskforge.errors import ConfigurationError
from taskforge.health import Check, HealthServer
from taskforge.logs import configure_logging
from taskforge.settings import GatewaySettings, load_settings
from taskforge_gateway.app import create_app

log = logging.getLogger("taskforge_gateway")

#: Seconds a readiness probe waits for Redis.
READY_TIMEOUT_S = 1.0

#: Seconds in-flight requests get to finish after SIGTERM.
GRACEFUL_SHUTDOWN_S = 10


def redis_check(settings: GatewaySettings) -> Check:
    """A readiness check of the metrics port: Redis answers PING (its own sync client).

    The health server runs on its own thread, so it cannot share the app's asyncio client.
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


def serve(settings: GatewaySettings) -> None:
    """Serve the gateway until SIGTERM/SIGINT (uvicorn drains in-flight requests)."""
    app = create_app(settings)
    health = HealthServer(
        settings.metrics_host, settings.metrics_port, live=lambda: None, ready=redis_check(settings)
    )
    health.start()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # Client addresses come from our own hop-counted X-Forwarded-For parsing (context.py);
        # uvicorn's would trust the leftmost, client-written address.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        health.stop()


def main(argv: list[str] | None = None) -> int:
    """Load settings from ``TASKFORGE_*`` and serve the gateway."""
    parser = argparse.ArgumentParser(prog="taskforge-gateway", description=__doc__)
    parser.parse_args(argv)
    try:
        settings = load_settings(GatewaySettings)
        configure_logging("gateway", settings.log_level, settings.log_format)
        serve(settings)
    except ConfigurationError as exc:
        print(f"taskforge-gateway: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
