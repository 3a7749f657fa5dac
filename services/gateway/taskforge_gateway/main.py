"""``taskforge-gateway``: the gateway's entrypoint, locally and in its image."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from taskforge import tracing
from taskforge.errors import ConfigurationError
from taskforge.health import HealthServer, redis_check
from taskforge.logs import configure_logging
from taskforge.settings import GatewaySettings, load_settings
from taskforge.startup import freeze_startup_heap
from taskforge_gateway.app import create_app

log = logging.getLogger("taskforge_gateway")


#: Seconds in-flight requests get to finish after SIGTERM.
GRACEFUL_SHUTDOWN_S = 10


def serve(settings: GatewaySettings) -> None:
    """Serve the gateway until SIGTERM/SIGINT (uvicorn drains in-flight requests)."""
    app = create_app(settings)
    freeze_startup_heap()
    health = HealthServer(
        settings.metrics_host, settings.metrics_port, live=lambda: None, ready=redis_check(settings)
    )
    health.start()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Named, not "auto": a missing uvloop or httptools must fail, not slow down.
        loop="uvloop",
        http="httptools",
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
        with tracing.session("taskforge-gateway"):
            serve(settings)
    except ConfigurationError as exc:
        print(f"taskforge-gateway: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
