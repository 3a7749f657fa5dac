"""Body size and media type checks, before FastAPI reads a body."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from taskforge.mediatypes import is_json_media_type
from taskforge.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimits:
    """413 for bodies over the limit (by header or while streaming), 415 for non-JSON bodies."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        refused = refusal(headers, self.max_body_bytes)
        if refused is not None:
            await _problem(send, scope, *refused)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def wrapped() -> dict[str, object]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return dict(message)

        return wrapped


def refusal(headers: Mapping[str, str], max_body_bytes: int) -> tuple[int, str, str] | None:
    """``(status, problem type, detail)`` refusing a body by its headers, or ``None``.

    Args:
        headers: the request's headers by lower-case name (at least ``content-length``,
            ``content-type`` and ``transfer-encoding`` when sent).
        max_body_bytes: the largest body accepted.
    """
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        return 413, "content-too-large", f"body over {max_body_bytes} bytes"
    has_body = (length is not None and length != "0") or "transfer-encoding" in headers
    if has_body and not is_json_media_type(headers.get("content-type", "")):
        return 415, "unsupported-media-type", "send application/json"
    return None


class BodyTooLarge(Exception):
    """A streamed body went past the limit; mapped to 413 by the app's handlers."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body over {limit} bytes")


async def _problem(send: Send, scope: Scope, status: int, kind: str, detail: str) -> None:
    titles = {413: "Content too large", 415: "Unsupported media type"}
    body = json.dumps(
        {
            "type": PROBLEM_BASE + kind,
            "title": titles[status],
            "status": status,
            "detail": detail,
            "instance": scope.get("path"),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
