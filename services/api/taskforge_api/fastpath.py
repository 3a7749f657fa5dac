"""``POST /v1/tasks`` answered without FastAPI's per-request machinery, when all is well.

The single enqueue is the api's hottest route, and FastAPI spent most of the api's CPU on it
outside the enqueue itself: routing, dependency solving, header and body parameter models,
response-model serialisation (py-spy at 16 connections: about 60% of the process).
:class:`FastEnqueue` takes the same steps as the route, through the same functions (gateway
credential, strict JSON parse, ``TaskCreate`` validation, :func:`enqueue_specs`), and answers
a well-formed request itself. Anything else (wrong credential, a header or body the route
would refuse) is handed over untouched, the body replayed, to the FastAPI route, which stays
the reference: it documents the route and words every refusal. Nothing is written before the
hand-over, so the route sees the request as if it came first.

It stands in front of FastAPI itself (see ``app._Api``).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import State
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskforge.errors import TaskForgeError
from taskforge.models import MAX_IDEMPOTENCY_KEY_CHARS, JsonFault, loads_checked
from taskforge.settings import ApiSettings
from taskforge.tracing.asgi import ROUTE_KEY
from taskforge_api.deps import (
    INTERNAL_TOKEN_HEADER,
    KEY_ID_HEADER,
    gateway_credential_ok,
    scope_of_key_id,
)
from taskforge_api.enqueueing import enqueue_specs
from taskforge_api.limits import refusal
from taskforge_api.observability import record
from taskforge_api.problems import bug_problem, domain_problem
from taskforge_api.schemas import TaskCreate, TaskCreated

#: The route served here, and its method.
PATH = "/v1/tasks"
METHOD = "POST"

#: Longest ``traceparent`` the route accepts (its ``Header(max_length=...)``).
MAX_TRACEPARENT_CHARS = 256

_TOKEN = INTERNAL_TOKEN_HEADER
_KEY_ID = KEY_ID_HEADER
_IDEMPOTENCY_KEY = "idempotency-key"
_TRACEPARENT = "traceparent"
#: The headers this module reads: the route's own, then the body limits'.
_WANTED = frozenset(
    name.encode()
    for name in (_TOKEN, _KEY_ID, _IDEMPOTENCY_KEY, _TRACEPARENT, "content-length",
                 "content-type", "transfer-encoding")
)  # fmt: skip
_JSON_HEADERS = [(b"content-type", b"application/json")]


class FastEnqueue:
    """Serves ``POST /v1/tasks`` directly; every other request goes to ``app`` unchanged.

    Stands in front of the whole app (see ``app._Api``), so it counts its own requests
    (:func:`record`) and hands over any body the body-limit middleware would refuse, which
    then answers 413 or 415 as it does on every route.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        #: The app's state: its settings, and its broker once the lifespan has started.
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != METHOD:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope[ROUTE_KEY] = PATH
        settings: ApiSettings = self.state.settings
        headers = _wanted_headers(scope)
        if "content-length" not in headers or refusal(headers, settings.max_body_bytes):
            await self.app(scope, receive, send)  # chunked, or refused by the body limits
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left before its body arrived: nobody to answer
        task = _valid_task(headers, body, settings)
        if task is None:
            # The route answers the refusal, with the very body it would have read.
            await self.app(scope, _replay(body, receive), send)
            return
        status = await _enqueue(self.state, scope, receive, send, headers, task)
        record(PATH, METHOD, status, time.perf_counter() - started)


async def _enqueue(
    state: State,
    scope: Scope,
    receive: Receive,
    send: Send,
    headers: dict[str, str],
    task: TaskCreate,
) -> int:
    """Enqueue ``task`` and answer as the route does; returns the status sent."""
    try:
        (created,) = await enqueue_specs(
            state.broker,
            state.settings,
            [task.to_spec(headers.get(_IDEMPOTENCY_KEY), headers.get(_TRACEPARENT))],
            scope=scope_of_key_id(headers.get(_KEY_ID, "")),
        )
    except TaskForgeError as exc:
        response = domain_problem(Request(scope), exc)
    except Exception as exc:  # a bug: a problem document, never a traceback
        response = bug_problem(Request(scope), exc)
    else:
        return await _send_created(send, created)
    await response(scope, receive, send)
    return response.status_code


def _wanted_headers(scope: Scope) -> dict[str, str]:
    """The headers read here, first occurrence of each (as Starlette's ``get``)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


def _valid_task(headers: dict[str, str], body: bytes, settings: ApiSettings) -> TaskCreate | None:
    """The body as a task if the route would accept the request, else ``None``."""
    if not gateway_credential_ok(headers.get(_TOKEN, ""), settings):
        return None
    idempotency_key = headers.get(_IDEMPOTENCY_KEY)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        return None
    if len(headers.get(_TRACEPARENT, "")) > MAX_TRACEPARENT_CHARS:
        return None
    try:
        value: Any = loads_checked(body, settings.max_json_depth)
        return TaskCreate.model_validate(value)
    except (JsonFault, ValidationError):
        return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` if the client left before its end.

    Its size is bounded by the body-limit middleware around this one.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that first gives back ``body``, already read, then the connection's events."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _send_created(send: Send, created: TaskCreated) -> int:
    """201 (200 for an idempotent replay) with ``Location``, as the route answers."""
    content = created.model_dump_json().encode()
    headers = [
        *_JSON_HEADERS,
        (b"content-length", str(len(content)).encode()),
        (b"location", f"{PATH}/{created.id}".encode()),
    ]
    status = 201 if created.created else 200
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
    return status
