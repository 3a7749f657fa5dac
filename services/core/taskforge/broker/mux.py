"""One multiplexed Redis connection per process for short, frequent calls.

redis-py's asyncio client spends about 115 µs of CPU on a three-command pipeline and 50 µs on a
lone GET (pool locks, retry and observability wrappers, a parse per command). :class:`RedisMux`
keeps one connection instead, writes each caller's commands as one packed batch, and hands the
replies back in order (Redis answers in the order it reads), parsed by hiredis, the parser
redis-py itself uses: about 20 µs for the same pipeline. The broker sends every Lua script call
through it (enqueue, fetch, finish, ...; see ``taskforge.scripts``) and the gateway its
admission round trip. Blocking commands (``XREAD BLOCK``) must never go through it: they would
hold every other caller's replies; those, and everything else, go through redis-py.

Errors: a lost or unreachable connection, or a reply later than ``timeout_s``, raises redis-py's
``ConnectionError`` or ``TimeoutError`` (so ``translate_errors`` makes them a 503), fails every
call waiting on that connection, and the next call connects again. Error replies are returned
in place as the exception redis-py would raise for them (``NoScriptError`` for ``NOSCRIPT``,
``OutOfMemoryError`` for ``OOM``, ``ResponseError`` otherwise). A connection belongs to the event
loop that opened it: a call from another loop opens its own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class _Link(asyncio.Protocol):
    """One connection; each call's replies are delivered to it in the order of the calls."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(encoding="utf-8", errors="backslashreplace")
        self._waiting: deque[tuple[asyncio.Future[list[Any]], list[Any], int]] = deque()
        self.closed = False
        #: When Redis last sent anything (loop time): a silent connection is a dead one.
        self.last_heard = self.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream socket's

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                self._deliver(reply)
        except hiredis.ProtocolError as exc:
            self.close(RedisConnectionError(f"invalid reply from Redis: {exc}"))

    def _deliver(self, reply: Any) -> None:
        if not self._waiting:
            self.close(RedisConnectionError("a reply from Redis that nobody asked for"))
            return
        if isinstance(reply, hiredis.ReplyError):
            reply = BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
        future, replies, count = self._waiting[0]
        replies.append(reply)
        if len(replies) == count:
            self._waiting.popleft()
            if not future.done():  # a caller that timed out is gone
                future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RedisConnectionError(f"connection to Redis lost ({exc or 'EOF'})"))

    def _fail(self, exc: Exception) -> None:
        while self._waiting:
            future = self._waiting.popleft()[0]
            if not future.done():
                future.set_exception(exc)

    def call(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Send ``count`` packed commands; the future gets their ``count`` replies."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(RedisConnectionError("connection to Redis closed"))
            return future
        self._waiting.append((future, [], count))
        self._transport.write(packed)
        return future

    def close(self, exc: Exception) -> None:
        """Close the connection; every waiting call fails with ``exc``."""
        self.closed = True
        self._fail(exc)
        if self._transport is not None:
            self._transport.close()


class RedisMux:
    """Commands to one Redis server over a single shared connection (see the module)."""

    def __init__(self, url: str, *, password: str | None, timeout_s: float) -> None:
        self._params: dict[str, Any] = dict(parse_url(url))
        if password is not None:
            self._params["password"] = password
        self._timeout_s = timeout_s
        self._link: _Link | None = None
        #: The connection being opened, shared by every caller that needs it meanwhile.
        self._opening: asyncio.Future[_Link] | None = None

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one write and return their replies, in order.

        Raises:
            redis.exceptions.ConnectionError: Redis cannot be reached, or the connection broke.
            redis.exceptions.TimeoutError: no reply within ``timeout_s``.
        """
        link = await self._connected()
        packed = b"".join(hiredis.pack_command(command) for command in commands)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await link.call(packed, len(commands))
        except TimeoutError:
            # Only this call fails: its replies, when they come, fill its slot and are dropped,
            # so the calls behind it keep theirs. The connection is given up only when Redis has
            # sent nothing for twice as long (a hung server or a dead network path, not one
            # slow script).
            if link.loop.time() - link.last_heard >= 2 * self._timeout_s:
                link.close(RedisTimeoutError("Redis did not answer in time"))
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout_s} s") from None

    async def _connected(self) -> _Link:
        loop = asyncio.get_running_loop()
        link = self._link
        if link is not None and not link.closed and link.loop is loop:
            return link
        opening = self._opening
        if opening is None or opening.get_loop() is not loop:
            # One attempt at a time, whose outcome every caller waiting meanwhile shares: a
            # hundred requests during an outage make one connection attempt, not a hundred in
            # a row. A link of another loop (one a test's or a CLI's asyncio.run ended) is
            # simply replaced.
            opening = self._opening = loop.create_future()
            task = loop.create_task(self._open())
            task.add_done_callback(lambda done: self._opened(done, opening))
        return await asyncio.shield(opening)

    def _opened(self, done: asyncio.Task[_Link], opening: asyncio.Future[_Link]) -> None:
        if self._opening is opening:
            self._opening = None
        if done.cancelled():
            opening.set_exception(RedisConnectionError("connecting to Redis was cancelled"))
        elif (exc := done.exception()) is not None:
            opening.set_exception(exc)
        else:
            self._link = done.result()
            opening.set_result(self._link)
        opening.exception()  # retrieved: nobody may be waiting any more

    async def _open(self) -> _Link:
        loop = asyncio.get_running_loop()
        params = self._params
        link: _Link | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                if params.get("connection_class") is UnixDomainSocketConnection:
                    _, link = await loop.create_unix_connection(_Link, params["path"])
                else:
                    _, link = await loop.create_connection(
                        _Link, params.get("host", "localhost"), params.get("port", 6379),
                        ssl=self._ssl_context(),
                    )  # fmt: skip
                await self._handshake(link)
        except BaseException as exc:
            if link is not None:  # opened, then the handshake failed or ran out of time
                link.close(RedisConnectionError("connection abandoned"))
            if isinstance(exc, OSError | TimeoutError):
                raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from exc
            raise
        return link

    def _ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context redis-py's own TLS connections would use, from the same URL options
        (certificates, CA, hostname check, minimum version, ciphers)."""
        if self._params.get("connection_class") is not SSLConnection:
            return None
        options = {k: v for k, v in self._params.items() if k.startswith("ssl_")}
        return SSLConnection(**options).ssl_context.get()

    async def _handshake(self, link: _Link) -> None:
        commands: list[tuple[Any, ...]] = []
        user, password = self._params.get("username"), self._params.get("password")
        if user or password is not None:  # as redis-py: a user alone authenticates with ""
            commands.append(("AUTH", user, password or "") if user else ("AUTH", password))
        if int(self._params.get("db") or 0):
            commands.append(("SELECT", int(self._params["db"])))
        if not commands:
            return
        packed = b"".join(hiredis.pack_command(c) for c in commands)
        for reply in await link.call(packed, len(commands)):
            if isinstance(reply, Exception):
                link.close(RedisConnectionError(str(reply)))
                raise RedisConnectionError(f"Redis refused the connection: {reply}")

    async def close(self) -> None:
        """Close the connection (calls still waiting fail)."""
        link, self._link = self._link, None
        if link is not None and not link.loop.is_closed():
            link.close(RedisConnectionError("the connection is closing"))
