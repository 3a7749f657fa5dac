"""Body size and media type: refused by the gateway, never forwarded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message, Scope

from taskforge.mediatypes import is_json_media_type
from taskforge_gateway.app import create_app
from tests.unit.gateway.support import (
    MakeGateway,
    MakeKey,
    assert_problem,
    bearer,
    gateway_settings,
    unique_client_address,
)
from tests.unit.gateway.upstream import Upstream

LIMIT = 100


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _json_of_size(size: int) -> bytes:
    body = b'{"type":"echo","pad":"' + b"x" * size + b'"}'
    return body[: size - 2] + b'"}' if len(body) > size else body


async def test_declared_length_over_the_limit_is_413_unread(
    make_gateway: MakeGateway, make_key: MakeKey, upstream: Upstream
) -> None:
    secret, _ = await make_key("tasks:write")
    marker = uuid.uuid4().hex
    headers = {**bearer(secret), "Content-Type": "application/json"}
    async with make_gateway(max_body_bytes=LIMIT) as gateway:
        response = await gateway.post(
            f"/v1/tasks?m={marker}", content=_json_of_size(LIMIT + 1), headers=headers
        )
    assert_problem(response, 413, "content-too-large")
    assert all(marker not in q for _, _, q in upstream.seen)


async def test_chunked_body_over_the_limit_is_413(
    make_gateway: MakeGateway, make_key: MakeKey, upstream: Upstream
) -> None:
    secret, _ = await make_key("tasks:write")
    marker = uuid.uuid4().hex
    headers = {**bearer(secret), "Content-Type": "application/json"}
    async with make_gateway(max_body_bytes=LIMIT) as gateway:
        response = await gateway.post(
            f"/v1/tasks?m={marker}", content=_chunks(b"[" + b"1," * 30, b"1," * 30), headers=headers
        )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "content-too-large")
    assert all(marker not in q for _, _, q in upstream.seen)


async def test_chunked_body_over_the_limit_on_a_gateway_route_is_413(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    secret, _ = await make_key("admin")
    headers = {**bearer(secret), "Content-Type": "application/json"}
    body = _chunks(b'{"name": "', b"n" * 80, b'", "scopes": ["admin"]}')
    async with make_gateway(max_body_bytes=LIMIT) as gateway:
        response = await gateway.post("/v1/keys", content=body, headers=headers)
    assert_problem(response, 413, "content-too-large")


async def test_body_at_the_limit_is_forwarded(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    secret, _ = await make_key("tasks:write")
    body = _json_of_size(LIMIT)
    assert len(body) == LIMIT
    headers = {**bearer(secret), "Content-Type": "application/json"}
    async with make_gateway(max_body_bytes=LIMIT) as gateway:
        declared = await gateway.post("/v1/tasks", content=body, headers=headers)
        chunked = await gateway.post(
            "/v1/tasks", content=_chunks(body[:50], body[50:]), headers=headers
        )
    assert declared.status_code == chunked.status_code == 200
    assert declared.json()["body"] == chunked.json()["body"] == body.decode()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", None]
)
async def test_wrong_media_type_is_415(
    make_gateway: MakeGateway, make_key: MakeKey, content_type: str | None
) -> None:
    secret, _ = await make_key("tasks:write")
    headers = bearer(secret) | ({"Content-Type": content_type} if content_type else {})
    async with make_gateway() as gateway:
        response = await gateway.post("/v1/tasks", content=b'{"type": "echo"}', headers=headers)
    assert_problem(response, 415, "unsupported-media-type")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
    ],
)
async def test_json_media_types_are_accepted(
    make_gateway: MakeGateway, make_key: MakeKey, content_type: str
) -> None:
    secret, _ = await make_key("tasks:write")
    headers = {**bearer(secret), "Content-Type": content_type}
    async with make_gateway() as gateway:
        response = await gateway.post("/v1/tasks", content=b'{"type": "echo"}', headers=headers)
    assert response.status_code == 200


async def test_posts_without_a_body_need_no_media_type(
    make_gateway: MakeGateway, make_key: MakeKey
) -> None:
    secret, _ = await make_key("admin")
    async with make_gateway() as gateway:
        response = await gateway.post("/consume-once?queue=default", headers=bearer(secret))
    assert response.status_code == 200


async def test_size_and_media_checks_come_after_authentication(make_gateway: MakeGateway) -> None:
    async with make_gateway(max_body_bytes=LIMIT) as gateway:
        response = await gateway.post("/v1/tasks", content=b"x" * 500)
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", True),
        ("application/problem+json; charset=utf-8", True),
        (" APPLICATION/JSON ", True),
        ("text/json", False),
        ("application/json-seq", False),
        ("", False),
    ],
)
def test_is_json_media_type(value: str, expected: bool) -> None:
    assert is_json_media_type(value) is expected


async def test_client_gone_mid_body_forwards_nothing(
    redis_url: str, upstream: Upstream, make_key: MakeKey
) -> None:
    secret, _ = await make_key("tasks:write")
    app = create_app(gateway_settings(redis_url=redis_url, api_url=upstream.url))
    marker = uuid.uuid4().hex
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"type": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/tasks", "raw_path": b"/v1/tasks", "root_path": "",
        "query_string": f"m={marker}".encode(), "server": ("gateway", 80),
        "client": (unique_client_address(), 1234),
        "headers": [
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
    }  # fmt: skip
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    assert sent == []
    assert all(marker not in q for _, _, q in upstream.seen)
