"""Forwarding to the api: one pooled HTTP client, an allow-list of headers each way.

Bodies are buffered, bounded by ``max_body_bytes`` both for the request (the limit is
enforced while reading) and in practice for the response (the api bounds what it returns).
Buffering lets an upstream timeout become a clean 504 instead of a truncated response.

The client is :class:`taskforge_gateway.upstream.Upstream` (why not aiohttp or httpx: there).
The answer goes back as raw ASGI messages: a Starlette ``Response`` and its header object
cost more than the copy of the allowed headers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote_from_bytes

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from taskforge.settings import GatewaySettings
from taskforge_gateway.observability import UPSTREAM_ERRORS
from taskforge_gateway.problems import BodyTooLarge, GatewayProblem
from taskforge_gateway.upstream import Upstream, UpstreamError, UpstreamResponse

log = logging.getLogger(__name__)

#: Client headers passed to the api as they are; credentials and cookies never are.
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "idempotency-key")

#: Api response headers passed back to the client.
RETURNED_RESPONSE_HEADERS = frozenset({"content-type", "location", "retry-after"})

#: Prefixes of further api response headers passed back (rate limits, idempotency).
RETURNED_RESPONSE_PREFIXES = ("ratelimit-", "idempotency-", "idempotent-")

#: Header carrying the gateway's credential to the api.
INTERNAL_TOKEN_HEADER = "X-TaskForge-Internal-Token"  # noqa: S105 - a header name

#: Header telling the api which key made the request (for its logs and task records).
KEY_ID_HEADER = "X-TaskForge-Key-Id"

#: Characters left as they are when re-encoding a raw path (escapes stay escaped).
_PATH_SAFE = "!$&'()*+,;=:@/%-._~"


def upstream_client(settings: GatewaySettings) -> Upstream:
    """The pooled client to the api (no proxy variables apply)."""
    return Upstream(
        settings.api_url,
        max_connections=settings.upstream_max_connections,
        timeout_s=settings.upstream_timeout_s,
    )


@dataclass(frozen=True, slots=True)
class Forwarding:
    """What the gateway adds to a forwarded request."""

    request_id: str
    key_id: str
    traceparent: str
    tracestate: str | None
    internal_token: str


async def read_body(receive: Receive, max_body_bytes: int) -> bytes:
    """The whole request body, refused as soon as it passes ``max_body_bytes``.

    Raises:
        BodyTooLarge: the body is larger than the limit (chunked bodies included).
        ClientDisconnect: the client went away before the end of its body.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Never forward half a body.
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > max_body_bytes:
            raise BodyTooLarge(max_body_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def upstream_target(scope: Scope) -> str:
    """Path and query exactly as the client sent them (percent-escapes preserved)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    target = quote_from_bytes(raw_path, safe=_PATH_SAFE)
    query: bytes = scope.get("query_string", b"")
    if query:
        target += "?" + quote_from_bytes(query, safe=_PATH_SAFE + "?")
    return target


def upstream_headers(headers: Headers, forwarding: Forwarding) -> dict[str, str]:
    """Allow-listed client headers plus the gateway's own."""
    out = {name: headers[name] for name in FORWARDED_REQUEST_HEADERS if name in headers}
    out[INTERNAL_TOKEN_HEADER] = forwarding.internal_token
    out[KEY_ID_HEADER] = forwarding.key_id
    out["X-Request-Id"] = forwarding.request_id
    out["traceparent"] = forwarding.traceparent
    if forwarding.tracestate:
        out["tracestate"] = forwarding.tracestate
    return out


def returned_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Allow-listed api response headers, as ASGI raw headers.

    Args:
        upstream: the api's headers, names lower-cased (as :class:`UpstreamResponse` has them).
    """
    out: list[tuple[bytes, bytes]] = []
    for name, value in upstream:
        if name in RETURNED_RESPONSE_HEADERS or name.startswith(RETURNED_RESPONSE_PREFIXES):
            out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


async def forward(
    client: Upstream, scope: Scope, body: bytes, headers: dict[str, str]
) -> UpstreamResponse:
    """Send the request to the api and return its answer.

    Raises:
        GatewayProblem: 502 when the api cannot be reached, breaks the connection or refuses
            the internal token; 504 when it does not answer within ``upstream_timeout_s``;
            400 when a forwarded header holds a line break.
    """
    try:
        answer = await client.request(scope["method"], upstream_target(scope), headers, body)
    except TimeoutError as exc:
        UPSTREAM_ERRORS.labels("timeout").inc()
        log.warning("api timeout on %s %s: %r", scope["method"], scope["path"], exc)
        raise GatewayProblem(504, "upstream-timeout", "the api did not answer in time") from exc
    except UpstreamError as exc:
        UPSTREAM_ERRORS.labels(exc.kind).inc()
        log.warning("api unreachable on %s %s: %r", scope["method"], scope["path"], exc)
        raise GatewayProblem(502, "upstream-unavailable", "the api is unavailable") from exc
    except ValueError as exc:
        # A forwarded header holding a line break; HTTP parsers refuse those before here.
        raise GatewayProblem(400, "bad-request", "a request header holds a line break") from exc
    if answer.status == 401:
        # The api's only 401 is a refused internal token: a deployment fault, and the client's
        # key is fine, so it must not be told otherwise.
        UPSTREAM_ERRORS.labels("credential").inc()
        log.error("the api refused the internal token: check TASKFORGE_INTERNAL_TOKEN on both")
        raise GatewayProblem(502, "upstream-unavailable", "the api refused the gateway")
    return answer


async def send_answer(send: Send, answer: UpstreamResponse) -> None:
    """Send the api's answer to the client: its status, allowed headers and body."""
    headers = returned_headers(answer.headers)
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
