"""hiredis command packing gives redis-py's bytes, and redis-py's errors where hiredis refuses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from taskforge.broker.packing import (
    FastConnection,
    FastSSLConnection,
    FastUnixConnection,
    use_fast_packing,
)

ARGS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "k1", "k2", "é", b"\x00\xff", 1.5, 0.1, -7, 2**70, ""),
    ("XADD", "s", "*", "id", "x" * 100_000),  # redis-py would chunk this; the bytes agree
    ("CLIENT SETNAME", "w1"),  # a name with a space: redis-py splits it, hiredis would not
    ("SET", "k", memoryview(b"abc")),
    ("SET", "k", "\udc80"),  # a lone surrogate: redis-py's encoder applies its error handler
]


def joined(parts: Sequence[bytes | memoryview]) -> bytes:
    return b"".join(bytes(p) for p in parts)


@pytest.mark.parametrize("args", ARGS, ids=lambda a: str(a[0]))
def test_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    fast = FastConnection(encoding_errors="backslashreplace")
    plain = Connection(encoding_errors="backslashreplace")
    assert joined(fast.pack_command(*args)) == joined(plain.pack_command(*args))


@pytest.mark.parametrize("value", [None, True])
def test_values_redis_py_refuses_are_refused_the_same_way(value: object) -> None:
    with pytest.raises(DataError):
        FastConnection().pack_command("SET", "k", value)


def test_the_client_pool_uses_the_matching_fast_class() -> None:
    expected = {
        "redis://localhost": (Connection, FastConnection),
        "rediss://localhost": (SSLConnection, FastSSLConnection),
        "unix:///tmp/redis.sock": (UnixDomainSocketConnection, FastUnixConnection),
    }
    for url, (before, after) in expected.items():
        client = Redis.from_url(url)
        assert client.connection_pool.connection_class is before
        use_fast_packing(client)
        assert client.connection_pool.connection_class is after
