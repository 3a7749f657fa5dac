"""A SERVER span per HTTP request, from the outermost ASGI layer of the gateway and the api.

It stands outside FastAPI (whose own telemetry the services turn off, or every request would
get two server spans) so that the gateway's guard and the api's enqueue fast path, which answer
most requests before FastAPI sees them, are inside the span. Its name is the route template
(``POST /v1/tasks/{task_id}/cancel``), never the raw path, so span names stay few.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry.trace import Span, SpanKind

from taskforge.tracing.setup import STATE
from taskforge.tracing.spans import active_span, extract, record_status

#: Where the gateway's guard and the api's fast path put the route template they matched
#: (Starlette's router leaves its matched route under ``"route"``).
ROUTE_KEY = "taskforge.route"

#: Probe paths: a kubelet calls them every few seconds, each would be a trace of one span.
PROBES = frozenset({"/healthz", "/readyz"})

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Any]

#: ``FastAPI(telemetry=...)`` for an app behind :class:`ServerSpans`: FastAPI's own request
#: spans would double ours, and with all of it off FastAPI also skips its per-request
#: OpenTelemetry checks. (Typed loosely: core does not depend on FastAPI.)
FASTAPI_TELEMETRY_OFF: Any = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _attributes(scope: Scope) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    server = scope.get("server")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    return attributes


def _name_from_routing(span: Span, method: str, scope: Scope) -> None:
    # Named once routing is done: the span's name is its route template, never the raw path.
    template = scope.get(ROUTE_KEY) or getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        span.update_name(f"{method} {template}")
        span.set_attribute("http.route", template)


class ServerSpans:
    """Wraps an ASGI app; passes straight through while tracing is off."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if STATE.provider is None or scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        parent = extract(_header(scope, b"traceparent"), _header(scope, b"tracestate"))
        status = 0

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with active_span(method, SpanKind.SERVER, _attributes(scope), parent) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                _name_from_routing(span, method, scope)
                if status:
                    record_status(span, status)
