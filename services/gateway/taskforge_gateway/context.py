"""Per-request facts taken from the client's headers: request id, trace context, address."""

from __future__ import annotations

import re
import secrets
import uuid

from starlette.datastructures import Headers

#: An incoming ``X-Request-Id`` is kept only if it has this shape (it ends up in logs).
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: A W3C ``traceparent`` of version 00: version, trace id, parent id, flags.
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

#: Longest ``tracestate`` forwarded (W3C: 32 members of at most 256 characters, ~8 KiB).
MAX_TRACESTATE_CHARS = 8192


#: Longest client address kept (it becomes part of a Redis key).
MAX_ADDRESS_CHARS = 64


def request_id(headers: Headers) -> str:
    """The client's ``X-Request-Id`` if well formed, else a new uuid4 hex."""
    incoming = headers.get("x-request-id", "")
    return incoming if REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex


def trace_context(headers: Headers) -> tuple[str, str | None]:
    """``(traceparent, tracestate)`` to send upstream.

    A valid incoming ``traceparent`` is continued unchanged (the gateway exports no span of
    its own, so the client's span stays the api span's parent). A missing or invalid one is
    replaced by a new sampled trace, and its ``tracestate`` is dropped, as W3C requires.
    """
    incoming = headers.get("traceparent", "").strip().lower()
    parsed = TRACEPARENT_RE.fullmatch(incoming)
    if parsed and set(parsed[1]) != {"0"} and set(parsed[2]) != {"0"}:
        state = headers.get("tracestate")
        return incoming, state if state and len(state) <= MAX_TRACESTATE_CHARS else None
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01", None


def trace_id(traceparent: str) -> str:
    """The trace id of a well-formed ``traceparent``."""
    return traceparent.split("-")[1]


def client_address(peer: str | None, headers: Headers, trusted_proxy_hops: int) -> str:
    """The client's address, for failed-authentication throttling.

    With ``trusted_proxy_hops`` = 0 this is the socket peer. Behind N trusted proxies, the
    Nth address of ``X-Forwarded-For`` counted from the right is the one the outermost
    proxy saw; addresses further left were written by the client and prove nothing.
    """
    if trusted_proxy_hops <= 0:
        return peer or "unknown"
    forwarded = [
        part.strip()
        for value in headers.getlist("x-forwarded-for")
        for part in value.split(",")
        if part.strip()
    ]
    chain = [*forwarded, peer or "unknown"]
    address = chain[-(trusted_proxy_hops + 1)] if len(chain) > trusted_proxy_hops else chain[0]
    return address[:MAX_ADDRESS_CHARS]
