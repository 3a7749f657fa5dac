"""RFC 9457 problem documents, and the one place exceptions become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from taskforge.errors import RedisUnavailable, TaskForgeError
from taskforge.problems import (
    PROBLEM_MEDIA_TYPE,
    TITLES,
    field_errors,
    problem_body,
)
from taskforge_api.jsonbody import InvalidJsonBody

log = logging.getLogger(__name__)


def problem_response(
    request: Request,
    status: int,
    problem_type: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem+json response for ``request``."""
    body = problem_body(
        status,
        problem_type,
        detail,
        instance=request.url.path,
        request_id=request.headers.get("x-request-id"),
        errors=errors,
    )
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def problem_media_types(document: dict[str, Any]) -> dict[str, Any]:
    """Document 4xx/5xx bodies as ``application/problem+json``, which is what is sent."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    return document


def domain_problem(request: Request, exc: TaskForgeError) -> JSONResponse:
    """The problem document of a domain error (503 with ``Retry-After`` for Redis)."""
    headers = {"Retry-After": "1"} if isinstance(exc, RedisUnavailable) else None
    if exc.status >= 500 and not isinstance(exc, RedisUnavailable):
        log.error("internal error: %s", exc, exc_info=exc)
    return problem_response(request, exc.status, exc.problem_type, str(exc), headers=headers)


def bug_problem(request: Request, exc: BaseException) -> JSONResponse:
    """500: a bug. Logs the traceback; the client sees none of it."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, "internal-error", "an internal error occurred")


def install_handlers(app: FastAPI) -> None:
    """Map every exception to a problem document, once."""

    @app.exception_handler(TaskForgeError)
    async def domain_error(request: Request, exc: TaskForgeError) -> JSONResponse:
        return domain_problem(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(
            request,
            422,
            "validation-error",
            "the request is invalid",
            errors=field_errors(exc.errors()),
        )

    @app.exception_handler(InvalidJsonBody)
    async def refused_body(request: Request, exc: InvalidJsonBody) -> JSONResponse:
        return problem_response(
            request, 422, "validation-error", "the request body is refused", errors=exc.errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's only 400 is a body it cannot decode: an invalid body, like any other.
            return problem_response(request, 422, "validation-error", str(exc.detail))
        problem_type = TITLES.get(exc.status_code, "error").lower().replace(" ", "-")
        return problem_response(
            request,
            exc.status_code,
            problem_type,
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        return bug_problem(request, exc)
