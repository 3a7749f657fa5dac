"""The gateway's HTTP/1.1 client to the api: pooled keep-alive connections, bodies buffered.

aiohttp's client spent about 125 µs of CPU per request here (URL and header objects, request
and response objects, timers, tracing hooks), a quarter of the gateway's cost per proxied
request. This client does only what the gateway needs, on the event loop's transports and
httptools' response parser (uvicorn's own, installed with ``uvicorn[standard]``): one origin,
targets already escaped, a buffered body each way, ``Content-Length`` or chunked answers, one
request at a time per connection, and a total timeout per request that includes waiting for
a free connection. A connection is reused only after a complete answer that allows it.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

#: Request methods that always carry ``Content-Length`` (0 for an empty body).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

#: Characters a header line must not hold (they would end it early).
_LINE_BREAKER = re.compile("[\r\n\0]")

#: Seconds a connection may sit idle and still be reused. The api (uvicorn) closes a
#: connection idle for 5 s; a request written as that close happens would fail (502), so
#: connections are retired well before.
IDLE_REUSE_S = 2.0


class UpstreamError(Exception):
    """The api could not be reached (``connect``) or broke the exchange (``protocol``)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A complete answer of the api; header names lower-cased, in the order received."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection to the api, carrying one exchange at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[UpstreamResponse] | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        #: Idle, connected, and its last answer allowed another request.
        self.reusable = False
        #: ``time.monotonic()`` when its last answer was complete.
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream socket's

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("protocol", f"invalid answer from the api: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._transport = None
        self._fail(UpstreamError("protocol", f"the api closed the connection ({exc or 'EOF'})"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is None or answer.done():
            self.reusable = False  # an answer nobody asked for: this connection is confused
            return
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (1xx): the real one follows
            self._headers, self._body = [], []
            return
        answer.set_result(UpstreamResponse(status, self._headers, b"".join(self._body)))
        self.reusable = self._parser.should_keep_alive() and self._transport is not None

    def _fail(self, exc: UpstreamError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)

    async def exchange(self, request: bytes) -> UpstreamResponse:
        """Send ``request`` (serialised) and wait for the whole answer."""
        if self._transport is None or self._transport.is_closing():
            raise UpstreamError("protocol", "the connection to the api is closed")
        self.reusable = False
        self._headers, self._body = [], []
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._answer

    def close(self) -> None:
        """Close the connection (an exchange in progress fails)."""
        self.reusable = False
        if self._transport is not None:
            self._transport.close()


class Upstream:
    """Requests to one api origin over at most ``max_connections`` pooled connections."""

    def __init__(self, base_url: str, *, max_connections: int, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the api URL must be http(s)://host[:port][/prefix]: {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._host_header = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> UpstreamResponse:
        """Send one request (``target``: an escaped path with its query) and read the answer.

        Raises:
            TimeoutError: no complete answer within ``timeout_s``.
            UpstreamError: the api cannot be reached or broke the exchange.
            ValueError: a header value holds a line break.
        """
        request = self._serialise(method, target, headers, body)
        async with asyncio.timeout(self.timeout_s), self._slots:
            connection = self._take_idle() or await self._connect()
            try:
                answer = await connection.exchange(request)
            except BaseException:
                connection.close()  # the answer's state is unknown: never reuse it
                raise
            if connection.reusable and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()
            return answer

    def _serialise(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {self._prefix}{target} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in headers.items():
            if _LINE_BREAKER.search(value):
                raise ValueError(f"header {name} holds a line break")
            lines.append(f"{name}: {value}")
        if body or method in _BODY_METHODS:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _take_idle(self) -> _Connection | None:
        """The most recently used idle connection; stale ones are closed on the way."""
        oldest = time.monotonic() - IDLE_REUSE_S
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable and connection.idle_since > oldest:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection, self._host, self._port, ssl=self._ssl
            )
        except OSError as exc:
            raise UpstreamError("connect", f"cannot connect to the api: {exc}") from exc
        return connection

    async def close(self) -> None:
        """Close every idle connection; busy ones close when their exchange ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()
