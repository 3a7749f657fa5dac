"""``taskforge-api``: the api's entrypoint, locally and in its image."""

from __future__ import annotations

import sys

import uvicorn

from taskforge import tracing
from taskforge.errors import ConfigurationError
from taskforge.health import HealthServer, redis_check
from taskforge.logs import configure_logging
from taskforge.settings import ApiSettings, load_settings
from taskforge.startup import freeze_startup_heap
from taskforge_api.app import create_app


def main(argv: list[str] | None = None) -> int:
    """Load settings from ``TASKFORGE_*`` and serve the api with uvicorn."""
    del argv
    try:
        settings = load_settings(ApiSettings)
        configure_logging("api", settings.log_level, settings.log_format)
        with tracing.session("taskforge-api"):
            serve(settings)
    except ConfigurationError as exc:
        print(f"taskforge-api: {exc}", file=sys.stderr)
        return 2
    return 0


def serve(settings: ApiSettings) -> None:
    """Serve the api with uvicorn until SIGTERM/SIGINT, and its health server beside it."""
    app = create_app(settings)
    freeze_startup_heap()
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
            # Named, not "auto": a missing uvloop or httptools must fail, not slow down.
            loop="uvloop",
            http="httptools",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        health.stop()


if __name__ == "__main__":
    sys.exit(main())
