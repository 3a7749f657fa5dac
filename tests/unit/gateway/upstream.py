"""A fake api for gateway tests: a real HTTP server that echoes what it received.

Served by uvicorn on a thread, on a free port of 127.0.0.1. Every route answers JSON
``{method, path, raw_path, query, headers, body}``; the query string programs the answer:
``echo_status=<code>`` (503 adds ``Retry-After: 7``) and ``echo_delay_s=<seconds>``.
Every answer also carries headers the gateway must pass back (``Location``,
``Idempotency-Replayed``) and some it must not (``Set-Cookie``, ``X-Upstream-Secret``).
``GET /openapi.json`` serves :data:`OPENAPI` and counts its calls in ``openapi_calls``;
``seen`` lists every other request received, so a test can prove one never arrived.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.ports import free_port

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_OK = {"200": {"description": "OK"}}
_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

#: A minimal api document: one write, one read, one admin op and one the gateway ignores.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "TaskForge API", "version": "1.0.0"},
    "paths": {
        "/v1/tasks": {
            "post": {
                "operationId": "create_task",
                "parameters": [
                    {
                        "name": "traceparent",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 256},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "201": {"description": "Created"},
                    "422": {
                        "description": "Invalid",
                        "content": {"application/json": {"schema": _PROBLEM}},
                    },
                },
            }
        },
        "/v1/tasks/{task_id}": {
            "get": {
                "operationId": "read_task",
                "parameters": [
                    {
                        "name": "task_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": {"description": "OK"}},
            }
        },
        "/v1/dlq": {
            "delete": {"operationId": "purge", "responses": {"200": {"description": "OK"}}}
        },
        "/internal/debug": {
            "get": {"operationId": "debug", "responses": {"200": {"description": "OK"}}}
        },
    },
    "components": {
        "schemas": {
            "Problem": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "status": {"type": "integer"}},
            }
        }
    },
}


class Upstream:
    """The fake api; use as a context manager or call :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.openapi_calls = 0
        self.openapi_headers: list[dict[str, str]] = []
        #: ``(method, path, query)`` of every echoed request, oldest first.
        self.seen: list[tuple[str, str, str]] = []
        app = Starlette(
            routes=[
                Route("/openapi.json", self._openapi, methods=["GET"]),
                Route(
                    "/{path:path}", self._echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
                ),
            ]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="fake-api", daemon=True)

    async def _openapi(self, request: Request) -> Response:
        self.openapi_calls += 1
        self.openapi_headers.append(dict(request.headers))
        return JSONResponse(OPENAPI)

    async def _echo(self, request: Request) -> Response:
        query = request.scope["query_string"].decode("latin-1")
        self.seen.append((request.method, request.url.path, query))
        body = await request.body()
        params = request.query_params
        await asyncio.sleep(float(params.get("echo_delay_s", "0")))
        status = int(params.get("echo_status", "200"))
        headers = {
            "Location": "/v1/tasks/echoed",
            "Idempotency-Replayed": "false",
            "Set-Cookie": "session=upstream",
            "X-Upstream-Secret": "must-not-leak",
        }
        if status == 503:
            headers["Retry-After"] = "7"
        echoed = {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
            "query": query,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("latin-1"),
        }
        return JSONResponse(echoed, status_code=status, headers=headers)

    def start(self) -> Upstream:
        """Serve until :meth:`stop`."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake api did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.should_exit = True
        self._thread.join(timeout=10)


def echoed_headers(payload: dict[str, Any]) -> dict[str, str]:
    """The headers the fake api received, by lower-case name (the last value wins)."""
    return {name: value for name, value in payload["headers"]}
