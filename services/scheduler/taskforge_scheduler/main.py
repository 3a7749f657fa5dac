"""``taskforge-scheduler``: the scheduler's entrypoint, locally and in its image."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from taskforge import tracing
from taskforge.errors import ConfigurationError
from taskforge.health import HealthServer
from taskforge.logs import configure_logging
from taskforge.settings import SchedulerSettings, load_settings
from taskforge.startup import freeze_startup_heap
from taskforge_scheduler.loop import Scheduler


async def serve(settings: SchedulerSettings) -> None:
    """Run the scheduler and its health server until SIGTERM/SIGINT."""
    scheduler = Scheduler(settings)
    freeze_startup_heap()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, scheduler.request_stop)
    health = HealthServer(
        settings.metrics_host, settings.metrics_port, live=scheduler.live, ready=scheduler.ready
    )
    health.start()
    try:
        await scheduler.run()
    finally:
        health.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load settings from ``TASKFORGE_*`` and run the scheduler."""
    parser = argparse.ArgumentParser(prog="taskforge-scheduler", description=__doc__)
    parser.parse_args(argv)
    try:
        settings = load_settings(SchedulerSettings)
        configure_logging("scheduler", settings.log_level, settings.log_format)
        with tracing.session("taskforge-scheduler"):
            uvloop.run(serve(settings))
    except ConfigurationError as exc:
        print(f"taskforge-scheduler: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
