"""Request metrics and access logs of the api, labelled by route template (bounded)."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskforge.metrics import Children

REQUESTS = Counter(
    "taskforge_api_requests_total",
    "Requests served by the api.",
    ["route", "method", "status_class"],
)
DURATION = Histogram(
    "taskforge_api_request_duration_seconds", "Time to answer a request.", ["route", "method"]
)

log = logging.getLogger("taskforge_api.access")


def route_template(scope: Scope) -> str:
    """The matched route's path template, or ``unmatched`` (never the raw path).

    The router leaves the route it ran in ``scope["route"]``; routes of included routers are
    found only there (the app's route list holds their routers, whose matches have no path).
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class RequestMetrics:
    """Counts and times every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            record(route_template(scope), scope["method"], status, time.perf_counter() - started)


_requests = Children(REQUESTS)
_durations = Children(DURATION)


def record(route: str, method: str, status: int, elapsed_s: float) -> None:
    """Count, time and (errors, or at DEBUG) log one answered request."""
    _requests(route, method, f"{status // 100}xx").inc()
    _durations(route, method).observe(elapsed_s)
    if status >= 500 or log.isEnabledFor(logging.DEBUG):
        log.log(
            logging.WARNING if status >= 500 else logging.DEBUG,
            "%s %s %d %.1fms",
            method,
            route,
            status,
            elapsed_s * 1000,
        )
