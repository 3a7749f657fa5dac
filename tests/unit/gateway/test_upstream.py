"""The gateway's HTTP client to the api (taskforge_gateway.upstream) against real TCP servers.

Each test serves canned HTTP/1.1 answers from an asyncio server on 127.0.0.1, so that what
a real api may do (keep-alive, chunked bodies, closing, breaking the answer, being slow) is
answered on a real socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from taskforge_gateway import upstream as upstream_module
from taskforge_gateway.upstream import Upstream, UpstreamError

OK = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

#: Decides what one request gets: the bytes to write, and whether to close afterwards.
Answer = Callable[[bytes], tuple[bytes, bool]]


class Server:
    """Counts connections and requests; answers each request with ``answer``."""

    def __init__(self, answer: Answer, delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                     if line.startswith(b"content-length:")),
                    0,
                )  # fmt: skip
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                await asyncio.sleep(self.delay_s)
                data, close = self.answer(request)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def serving(answer: Answer, delay_s: float = 0.0) -> AsyncIterator[Server]:
    server = Server(answer, delay_s)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def client(server: Server, max_connections: int = 10, timeout_s: float = 5.0) -> Upstream:
    return Upstream(
        f"http://127.0.0.1:{server.port}", max_connections=max_connections, timeout_s=timeout_s
    )


async def test_sequential_requests_share_one_kept_alive_connection() -> None:
    async with serving(lambda _: (OK, False)) as server:
        upstream = client(server)
        answers = [
            await upstream.request("POST", "/v1/tasks?x=1", {"a": "b"}, b"{}") for _ in range(5)
        ]
        await upstream.close()
    assert [(a.status, a.body) for a in answers] == [(201, b"{}")] * 5
    assert answers[0].headers == [("content-type", "application/json"), ("content-length", "2")]
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/tasks?x=1 HTTP/1.1\r\n")
    assert b"\r\na: b\r\n" in first and b"\r\nContent-Length: 2\r\n" in first


async def test_a_base_path_prefixes_every_target() -> None:
    async with serving(lambda _: (OK, False)) as server:
        upstream = Upstream(f"http://127.0.0.1:{server.port}/api/", max_connections=1, timeout_s=5)
        await upstream.request("GET", "/v1/queues", {})
        await upstream.close()
    assert server.requests[0].startswith(b"GET /api/v1/queues HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in server.requests[0]
    assert b"Content-Length" not in server.requests[0]


async def test_a_chunked_answer_is_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    async with serving(lambda _: (chunked, False)) as server:
        upstream = client(server)
        answers = [await upstream.request("GET", "/", {}) for _ in range(2)]
        await upstream.close()
    assert [a.body for a in answers] == [b"abcdefg", b"abcdefg"]
    assert server.connections == 1


async def test_a_connection_the_api_closes_is_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    async with serving(lambda _: (closing, True)) as server:
        upstream = client(server)
        answers = [await upstream.request("GET", "/", {}) for _ in range(3)]
        await upstream.close()
    assert [a.body for a in answers] == [b"ok"] * 3
    assert server.connections == 3


@pytest.mark.parametrize(
    "broken",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",  # closed mid-body
        b"NOT HTTP AT ALL\r\n\r\n",  # not an HTTP answer
        b"",  # closed without a word
    ],
)
async def test_a_broken_answer_is_a_protocol_error_and_the_next_request_works(
    broken: bytes,
) -> None:
    answers = iter([(broken, True), (OK, False)])
    async with serving(lambda _: next(answers)) as server:
        upstream = client(server)
        with pytest.raises(UpstreamError) as failed:
            await upstream.request("GET", "/", {})
        assert failed.value.kind == "protocol"
        assert (await upstream.request("GET", "/", {})).status == 201
        await upstream.close()


async def test_an_unreachable_api_is_a_connect_error(unused_tcp_port: int) -> None:
    upstream = Upstream(f"http://127.0.0.1:{unused_tcp_port}", max_connections=1, timeout_s=5)
    with pytest.raises(UpstreamError) as failed:
        await upstream.request("GET", "/", {})
    assert failed.value.kind == "connect"


async def test_connections_are_capped_and_waiting_counts_against_the_timeout() -> None:
    async with serving(lambda _: (OK, False), delay_s=0.2) as server:
        upstream = client(server, max_connections=2)
        answers = await asyncio.gather(*(upstream.request("GET", "/", {}) for _ in range(6)))
        assert [a.status for a in answers] == [201] * 6
        assert server.most_open == 2
        hurried = client(server, max_connections=1, timeout_s=0.3)
        outcomes = await asyncio.gather(
            *(hurried.request("GET", "/", {}) for _ in range(3)), return_exceptions=True
        )
        await upstream.close()
        await hurried.close()
    # One answer takes 0.2 s, so the third in line cannot have its answer within 0.3 s.
    assert any(isinstance(o, TimeoutError) for o in outcomes)


async def test_a_header_value_with_a_line_break_is_refused() -> None:
    async with serving(lambda _: (OK, False)) as server:
        upstream = client(server)
        with pytest.raises(ValueError, match="line break"):
            await upstream.request("GET", "/", {"x": "a\r\nInjected: 1"})
        await upstream.close()
    assert server.requests == []


async def test_a_connection_idle_too_long_is_retired_before_the_api_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upstream_module, "IDLE_REUSE_S", 0.05)
    async with serving(lambda _: (OK, False)) as server:
        upstream = client(server)
        await upstream.request("GET", "/", {})
        await upstream.request("GET", "/", {})
        await asyncio.sleep(0.2)
        await upstream.request("GET", "/", {})
        await upstream.close()
    assert server.connections == 2
