"""``taskforge-worker``: the worker's entrypoint, locally and in its image."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from taskforge import tracing
from taskforge.errors import ConfigurationError
from taskforge.handlers import load_handlers
from taskforge.health import HealthServer
from taskforge.logs import configure_logging
from taskforge.settings import WorkerSettings, load_settings
from taskforge.startup import freeze_startup_heap
from taskforge_worker.runtime import Worker, WorkerCrashed

log = logging.getLogger("taskforge_worker")


async def serve(settings: WorkerSettings, *, burst: bool) -> None:
    """Run one worker with its health server until SIGTERM/SIGINT (or drained, in burst)."""
    registry = load_handlers(settings.handlers)
    worker = Worker(settings, registry)
    freeze_startup_heap()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    health = HealthServer(
        settings.metrics_host,
        settings.metrics_port,
        live=worker.liveness.live,
        ready=worker.liveness.ready,
    )
    health.start()
    try:
        await worker.run(burst=burst)
    finally:
        health.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load settings from ``TASKFORGE_*`` and run the worker."""
    parser = argparse.ArgumentParser(prog="taskforge-worker", description=__doc__)
    parser.add_argument(
        "--burst", action="store_true", help="exit once the queues are empty (tests, batch jobs)"
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(WorkerSettings)
        configure_logging("worker", settings.log_level, settings.log_format)
        with tracing.session("taskforge-worker"):
            uvloop.run(serve(settings, burst=args.burst))
    except ConfigurationError as exc:
        print(f"taskforge-worker: {exc}", file=sys.stderr)
        return 2
    except WorkerCrashed as exc:
        log.error("worker stopped after a crash: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
