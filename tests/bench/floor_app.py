"""The floor for an HTTP enqueue: a bare ASGI app that XADDs the request body to a stream.

No framework, no validation, no authentication, no second hop: uvicorn (uvloop, httptools, one
process) hands the body to ``redis.asyncio`` and answers 202 with the entry's id. Whatever the
gateway -> api path costs beyond this is TaskForge's own; the bench reports the ratio.

Run as ``python -m tests.bench.floor_app --port PORT --redis-url URL``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from redis.asyncio import Redis

STREAM = "bench:floor"

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def make_app(client: Redis) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """The ASGI callable, writing to ``client``."""

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        entry_id = await client.xadd(STREAM, {"body": b"".join(chunks)})
        raw_id = entry_id if isinstance(entry_id, bytes) else entry_id.encode()
        body = b'{"id":"' + raw_id + b'"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        make_app(Redis.from_url(args.redis_url)),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
