"""The multiplexed Redis connection (taskforge.broker.mux) on real servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskforge.broker.mux import RedisMux
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer


async def test_concurrent_calls_get_their_own_replies_in_order(redis_url: str) -> None:
    mux = RedisMux(redis_url, password=None, timeout_s=5)
    try:

        async def one(n: int) -> list[object]:
            return await mux.execute(
                ("SET", f"mux:{n}", n), ("GET", f"mux:{n}"), ("HGET", f"mux:none:{n}", "f")
            )

        replies = await asyncio.gather(*(one(n) for n in range(200)))
        assert replies == [["OK", str(n), None] for n in range(200)]
        assert await mux.execute(("DEL", *(f"mux:{n}" for n in range(200)))) == [200]
    finally:
        await mux.close()


async def test_error_replies_are_returned_in_place(redis_url: str) -> None:
    mux = RedisMux(redis_url, password=None, timeout_s=5)
    try:
        nosha, _, wrong, fine = await mux.execute(
            ("EVALSHA", "0" * 40, 0), ("SET", "mux:text", "abc"), ("INCR", "mux:text"), ("PING",)
        )
    finally:
        await mux.close()
    assert isinstance(nosha, NoScriptError)
    assert isinstance(wrong, ResponseError) and not isinstance(wrong, NoScriptError)
    assert fine == "PONG"


async def test_password_and_database_come_from_the_url_and_settings(tmp_path: Path) -> None:
    with RedisServer(dir=tmp_path, password="s3cret-pass") as server:
        url = f"redis://127.0.0.1:{server.port}/3"
        refused = RedisMux(url, password="wrong", timeout_s=5)
        with pytest.raises(RedisConnectionError):
            await refused.execute(("PING",))
        mux = RedisMux(url, password="s3cret-pass", timeout_s=5)
        try:
            await mux.execute(("SET", "where", "db3"))
            # The same key in database 0 is another key.
            in_url = RedisMux(server.url, password=None, timeout_s=5)
            assert await in_url.execute(("GET", "where")) == [None]
            await in_url.close()
            assert await mux.execute(("GET", "where")) == ["db3"]
        finally:
            await mux.close()


async def test_an_outage_fails_calls_and_the_next_call_after_it_reconnects(
    tmp_path: Path,
) -> None:
    with RedisServer(dir=tmp_path) as server:
        mux = RedisMux(server.url, password=None, timeout_s=5)
        try:
            assert await mux.execute(("PING",)) == ["PONG"]
            server.stop()
            with pytest.raises(RedisConnectionError):
                await mux.execute(("PING",))
            server.start()
            assert await mux.execute(("PING",)) == ["PONG"]
        finally:
            await mux.close()


async def test_nothing_listening_is_a_connection_error() -> None:
    mux = RedisMux(f"redis://127.0.0.1:{free_port()}/0", password=None, timeout_s=5)
    with pytest.raises(RedisConnectionError):
        await mux.execute(("PING",))


async def test_a_late_reply_is_a_timeout_and_later_calls_are_not_misaligned(
    redis_url: str,
) -> None:
    mux = RedisMux(redis_url, password=None, timeout_s=0.2)
    try:
        # The server blocks this connection for 2 s: this call's reply comes too late.
        with pytest.raises(RedisTimeoutError):
            await mux.execute(("BLPOP", "mux:never", 2))
        async with asyncio.timeout(10):
            # Calls behind the blocked one wait for it (or time out, and a connection silent
            # for twice the timeout is replaced); none ever gets another call's reply.
            while True:
                try:
                    assert await mux.execute(("ECHO", "after")) == ["after"]
                    break
                except RedisTimeoutError:
                    continue
    finally:
        await mux.close()


async def test_a_timed_out_call_does_not_fail_the_calls_behind_it(redis_url: str) -> None:
    """Each call has its own deadline: one slow reply must not fail a later call that Redis
    answers in time (that call may have run: failing it would leave its outcome unknown)."""
    mux = RedisMux(redis_url, password=None, timeout_s=1.0)
    try:
        slow = asyncio.ensure_future(mux.execute(("BLPOP", "mux:never", 1.5)))
        await asyncio.sleep(0.7)
        later = asyncio.ensure_future(mux.execute(("INCR", "mux:counter")))
        with pytest.raises(RedisTimeoutError):
            await slow
        async with asyncio.timeout(10):
            assert await later == [1]
    finally:
        await mux.close()


async def test_callers_during_an_outage_share_one_connection_attempt() -> None:
    """A server that accepts and never answers: every waiting caller fails with the one
    attempt's timeout, instead of each making its own attempt after the previous one."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    mux = RedisMux(f"redis://:pw@127.0.0.1:{port}/0", password=None, timeout_s=0.5)
    try:
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(mux.execute(("PING",)) for _ in range(5)), return_exceptions=True
        )
        elapsed = asyncio.get_running_loop().time() - started
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        assert elapsed < 2.0  # five attempts in a row would take 2.5 s
    finally:
        await mux.close()
        for writer in accepted:
            writer.close()
        listener.close()
        await listener.wait_closed()
