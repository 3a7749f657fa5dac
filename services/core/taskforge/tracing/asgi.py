"""A SERVER span per HTTP request, from the outermost ASGI layer of the gateway and the api.

It stands outside FastAPI (whose own telemetry the services turn off, or every request would
get two server spans) so that the gateway's guard and the api's enqueue fast path, which answer
most requests before FastAPI sees them, are inside the span. Its name is the route template
(``POST /v1/tasks/{task_id}/cancel``), never the raw path, so span names stay few.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from taskforge.tracing.setup import STATE
from taskforge.tracing.spans import extract, tracer

#: ``(method, path) -> route template`` before the request runs, or None to take the one
#: Starlette's routing finds.
RouteOf = Callable[[str, str], str | None]

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


def _attributes(scope: Scope, route: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if route is not None:
        attributes["http.route"] = route
    server = scope.get("server")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    return attributes


def _name_from_routing(span: Span, method: str, scope: Scope) -> None:
    # Starlette's router leaves the route it matched in the scope.
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        span.update_name(f"{method} {template}")
        span.set_attribute("http.route", template)


class ServerSpans:
    """Wraps an ASGI app; passes straight through while tracing is off."""

    def __init__(self, app: ASGIApp, route_of: RouteOf) -> None:
        self.app = app
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if STATE.provider is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        route = self.route_of(method, scope["path"])
        parent = extract(_header(scope, b"traceparent"), _header(scope, b"tracestate"))
        span = tracer().start_span(
            f"{method} {route}" if route else method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_attributes(scope, route),
        )
        status = 0

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_status)
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
            raise
        finally:
            context.detach(token)
            if route is None:
                _name_from_routing(span, method, scope)
            if status:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute("error.type", str(status))
            span.end()
