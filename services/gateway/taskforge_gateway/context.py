"""Per-request facts taken from the client's headers: request id, trace context, address."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from starlette.datastructures import Headers
from starlette.types import Scope

#: An incoming ``X-Request-Id`` is kept only if it has this shape (it ends up in logs).
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: A W3C ``traceparent`` of version 00: version, trace id, parent id, flags.
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

#: Longest ``tracestate`` forwarded (W3C: 32 members of at most 256 characters, ~8 KiB).
MAX_TRACESTATE_CHARS = 8192


#: Longest client address kept (it becomes part of a Redis key).
MAX_ADDRESS_CHARS = 64


class RequestHeaders(Headers):
    """A request's headers, read from a dict built once (the first value of each name).

    The guard reads about a dozen headers per request, most of them absent; Starlette's
    lookups scan the raw list each time and raise ``KeyError`` for every absent one.
    """

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        first: dict[str, str] = {}
        for name, value in self.raw:  # names are lower-case in ASGI
            first.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        self._first = first

    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._first


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
