"""The request pipeline every call goes through, as one ASGI middleware.

Steps, in order (each may answer instead of going on):

1. Request id and trace context; route match: unknown path 404, wrong method 405.
2. Public routes (probes, OpenAPI) go straight to the app.
3. The client address's failed-authentication counter: 429 while over the limit.
4. The API key: 401 when missing, invalid or revoked.
5. The key's rate limit: 429 when exhausted. From here on, responses carry ``RateLimit-*``.
6. The route's scope: 403 when the key lacks it.
7. Body headers: 413 when ``Content-Length`` is over the limit, 415 on a wrong media type.
8. Local routes (API keys) go to the app, the rest to the api; the body is counted while it
   is read (413 past the limit).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskforge import tracing
from taskforge.apikeys import ApiKey
from taskforge.errors import RedisUnavailable
from taskforge.mediatypes import is_json_media_type
from taskforge.tracing.asgi import ROUTE_KEY
from taskforge_gateway import problems
from taskforge_gateway.auth import presented_key
from taskforge_gateway.context import (
    RequestHeaders,
    client_address,
    request_id,
    trace_context,
    trace_id,
)
from taskforge_gateway.observability import RATE_LIMITED, observe
from taskforge_gateway.problems import GatewayProblem, problem
from taskforge_gateway.proxy import (
    Forwarding,
    forward,
    read_body,
    send_answer,
    upstream_headers,
)
from taskforge_gateway.routing import Rule, Target, match
from taskforge_gateway.runtime import Gateway

#: Status logged when the client went away before its body arrived (nginx's convention).
CLIENT_CLOSED_REQUEST = 499

#: Methods whose body must be JSON.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class Exchange:
    """What the pipeline learnt about one request, and headers for every response."""

    request_id: str
    traceparent: str
    tracestate: str | None
    route: str = "unmatched"
    client: str | None = None
    key: ApiKey | None = None
    status: int = 500
    response_headers: dict[str, str] = field(default_factory=dict)


def check_body_headers(method: str, headers: Headers, max_body_bytes: int) -> None:
    """Refuse a body by its headers, before reading any of it.

    Raises:
        GatewayProblem: 413 (declared length over the limit) or 415 (not JSON).
    """
    length = headers.get("content-length", "")
    declared = int(length) if length.isdigit() else None
    if declared is not None and declared > max_body_bytes:
        raise GatewayProblem(
            413, "content-too-large", f"the request body is larger than {max_body_bytes} bytes"
        )
    has_body = (declared or 0) > 0 or "chunked" in headers.get("transfer-encoding", "").lower()
    if (
        method in BODY_METHODS
        and has_body
        and not is_json_media_type(headers.get("content-type", ""))
    ):
        raise GatewayProblem(415, "unsupported-media-type", "send the body as application/json")


def with_headers(
    raw: Iterable[tuple[bytes, bytes]], added: dict[str, str]
) -> list[tuple[bytes, bytes]]:
    """``raw`` response headers with ``added`` set (replacing any of the same name)."""
    encoded = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in added.items()
    ]
    names = {name for name, _ in encoded}
    return [(name, value) for name, value in raw if name.lower() not in names] + encoded


class Guard:
    """Authenticates, rate-limits and routes every HTTP request (see the module steps)."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self._upstream_host = urlsplit(str(gateway.settings.api_url)).hostname or ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = RequestHeaders(scope)
        traceparent, tracestate = trace_context(headers)
        if tracing.enabled():
            # The request's span (ServerSpans, just outside) is what the logs name.
            traceparent = tracing.current_traceparent() or traceparent
        exchange = Exchange(request_id(headers), traceparent, tracestate)
        scope.setdefault("state", {})["request_id"] = exchange.request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = int(message["status"])
                message["headers"] = with_headers(
                    message.get("headers", ()),
                    {"x-request-id": exchange.request_id, **exchange.response_headers},
                )
            await send(message)

        try:
            await self._handle(scope, receive, send_with_headers, headers, exchange)
        finally:
            observe(
                method=scope["method"],
                route=exchange.route,
                status=exchange.status,
                duration_s=time.perf_counter() - started,
                request_id=exchange.request_id,
                key_id=exchange.key.id if exchange.key else None,
                client=exchange.client,
                trace_id=trace_id(exchange.traceparent),
            )

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, exchange: Exchange
    ) -> None:
        found = match(scope["method"], scope["path"])
        if found.rule is None:
            await self._no_route(scope, found.allowed)(scope, receive, send)
            return
        exchange.route = scope[ROUTE_KEY] = found.rule.template
        started = finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, finished
            started = started or message["type"] == "http.response.start"
            finished = message["type"] == "http.response.body" and not message.get("more_body")
            await send(message)

        try:
            if found.rule.target is Target.PUBLIC:
                await self.app(scope, receive, tracking_send)
            else:
                await self._admitted(scope, receive, tracking_send, headers, exchange, found.rule)
        except ClientDisconnect:
            exchange.status = CLIENT_CLOSED_REQUEST
        except Exception as exc:  # every error, bugs included, ends as a problem document
            if finished:
                # FastAPI's error layer answers a bug in its routes (our handler logs it),
                # then raises it again for the server's log: it is answered and logged.
                return
            if started:
                raise
            await self._error_response(scope, exc)(scope, receive, send)

    def _no_route(self, scope: Scope, allowed: tuple[str, ...]) -> Response:
        if not allowed:
            return problem(scope, 404, "not-found", f"no route {scope['path']}")
        return problem(
            scope,
            405,
            "method-not-allowed",
            f"{scope['method']} is not allowed on {scope['path']}",
            headers={"Allow": ", ".join(allowed)},
        )

    def _error_response(self, scope: Scope, exc: Exception) -> Response:
        if isinstance(exc, GatewayProblem):
            return problems.from_gateway_problem(scope, exc)
        if isinstance(exc, RedisUnavailable):
            return problems.redis_unavailable(scope, exc)
        if isinstance(exc, HTTPException) and exc.status_code == 413:
            return problem(scope, 413, "content-too-large", exc.detail)
        return problems.internal_error(scope, exc)

    async def _admitted(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        exchange: Exchange,
        rule: Rule,
    ) -> None:
        """Steps 3 to 8: runs only for authenticated routes."""
        key = await self._authenticate(scope, headers, exchange)
        if rule.scope is not None and not key.allows(rule.scope):
            raise GatewayProblem(
                403,
                "insufficient-scope",
                f"this route needs the {rule.scope!r} scope",
                headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{rule.scope}"'
                },
            )
        settings = self.gateway.settings
        check_body_headers(scope["method"], headers, settings.max_body_bytes)
        await self.gateway.auth.touch(key)
        if rule.target is Target.LOCAL:
            scope["state"]["api_key"] = key
            await self.app(scope, _limited(receive, settings.max_body_bytes), send)
            return
        body = await read_body(receive, settings.max_body_bytes)
        with tracing.http_client(scope["method"], rule.template, self._upstream_host) as span:
            forwarding = Forwarding(
                request_id=exchange.request_id,
                key_id=key.id,
                # Inside the proxy call's span, the api continues that span.
                traceparent=tracing.current_traceparent(exchange.traceparent) or "",
                tracestate=exchange.tracestate,
                internal_token=settings.internal_token.get_secret_value(),
            )
            answer = await forward(
                self.gateway.http, scope, body, upstream_headers(headers, forwarding)
            )
            tracing.record_status(span, answer.status)
        await send_answer(send, answer)

    async def _authenticate(self, scope: Scope, headers: Headers, exchange: Exchange) -> ApiKey:
        """Steps 3 to 5: throttle, key, rate limit."""
        peer = scope.get("client")
        settings = self.gateway.settings
        exchange.client = client_address(
            peer[0] if peer else None, headers, settings.trusted_proxy_hops
        )
        key, decision = await self.gateway.auth.admit(
            presented_key(headers), exchange.client, self._limits
        )
        exchange.key = key
        exchange.response_headers.update(decision.headers())
        if not decision.allowed:
            RATE_LIMITED.inc()
            raise GatewayProblem(
                429,
                "rate-limited",
                f"rate limit of key {key.id} exceeded; retry in {decision.retry_after_s} s",
            )
        return key

    def _limits(self, key: ApiKey) -> tuple[float, int]:
        settings = self.gateway.settings
        return key.rate_per_s or settings.default_rate_per_s, key.burst or settings.default_burst


def _limited(receive: Receive, max_body_bytes: int) -> Receive:
    """``receive`` that raises :class:`BodyTooLarge` once the body passes the limit."""
    size = 0

    async def limited() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > max_body_bytes:
                raise problems.BodyTooLarge(max_body_bytes)
        return message

    return limited
