"""``taskforge-api``: the api's entrypoint, locally and in its image."""

from __future__ import annotations

import sys

import uvicorn
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from taskforge.errors import ConfigurationError
from taskforge.health import Check, HealthServer
from taskforge.logs import configure_logging
from taskforge.settings import ApiSettings, load_settings
from taskforge_api.app import create_app

#: Seconds a readiness probe waits for Redis.
READY_TIMEOUT_S = 1.0


def redis_check(settings: ApiSettings) -> Check:
    """The readiness check of the metrics port: Redis answers PING (its own sync client).

    The health server runs on its own thread, so it cannot share the app's asyncio client.
    The gateway's check is the same; both belong in ``taskforge.health``.
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


def main(argv: list[str] | None = None) -> int:
    """Load settings from ``TASKFORGE_*`` and serve the api with uvicorn."""
    del argv
    try:
        settings = load_settings(ApiSettings)
    except ConfigurationError as exc:
        print(f"taskforge-api: {exc}", file=sys.stderr)
        return 2
    configure_logging("api", settings.log_level, settings.log_format)
    app = create_app(settings)
    health = HealthServer(
        settings.metrics_host,
        settings.metrics_port,
        live=lambda: None,
        ready=redis_check(settings),
    )
    health.start()
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        health.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
