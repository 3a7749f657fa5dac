"""A tiny real HTTP server that records requests and answers from a script.

It runs on the test's own event loop, on a free port of 127.0.0.1 (or the address and port
given: any 127.0.0.0/8 address works on Linux), and speaks just enough
HTTP/1.1 for clients such as httpx: one request per connection (it answers with
``Connection: close``), bodies framed by ``Content-Length`` (chunked request bodies are not
supported). Typical use::

    async with HttpSink() as sink:
        sink.respond(503, headers={"Retry-After": "7"})  # the first request gets this
        sink.respond(200, body={"id": "m-1"})            # the second this; later ones the default
        ...                                              # sink.url, sink.requests
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the sink received. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class SinkResponse:
    """One scripted answer; ``delay_s`` waits before answering (to provoke client timeouts)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0


def _encode_body(body: bytes | str | Any, headers: dict[str, str]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode()


class HttpSink:
    """A recording HTTP server; see the module docstring.

    Args:
        default: the answer once the scripted ones are used up (200 with ``{}`` by default).
        host: the IPv4 address to listen on.
        port: the port; 0 lets the kernel pick a free one.
    """

    def __init__(
        self, default: SinkResponse | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.default = default or SinkResponse(200, {"Content-Type": "application/json"}, b"{}")
        self.host = host
        #: Every request received, in order.
        self.requests: list[RecordedRequest] = []
        self._script: deque[SinkResponse] = deque()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self.port = port

    @property
    def url(self) -> str:
        """``http://<host>:<port>`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    def respond(
        self,
        status: int = 200,
        body: bytes | str | Any = b"",
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue the answer to the next unanswered request; non-str, non-bytes body is JSON."""
        headers = dict(headers or {})
        encoded = _encode_body(body, headers)
        self._script.append(SinkResponse(status, headers, encoded, delay_s))

    async def start(self) -> Self:
        """Listen (on a port the kernel picks unless one was given, so there is no race)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and end connections still being served."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        # Awaiting them keeps "Task was destroyed but it is pending" out of the test log.
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            answer = self._script.popleft() if self._script else self.default
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            writer.write(_encode_response(answer))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away, e.g. after its own timeout
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    request_line = await reader.readline()
    if not request_line.strip():
        return None
    method, target, _version = request_line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RecordedRequest(method, target, headers, body)


def _encode_response(answer: SinkResponse) -> bytes:
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {answer.status} {reason}"]
    lines += [f"{name}: {value}" for name, value in answer.headers.items()]
    lines += [f"Content-Length: {len(answer.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + answer.body
