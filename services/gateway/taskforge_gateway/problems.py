"""RFC 9457 problem documents: every error the gateway itself answers, built in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from taskforge.errors import RedisUnavailable, TaskForgeError
from taskforge.problems import (
    PROBLEM_MEDIA_TYPE,
    field_errors,
    problem_body,
)

log = logging.getLogger(__name__)


#: Problem type of a Starlette/FastAPI ``HTTPException`` by status.
_HTTP_TYPES = {404: "not-found", 405: "method-not-allowed", 413: "content-too-large"}


class GatewayProblem(Exception):
    """An error answered as a problem document (raised where the decision is taken)."""

    def __init__(
        self,
        status: int,
        problem_type: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.problem_type = problem_type
        self.detail = detail
        self.headers = headers or {}


class BodyTooLarge(HTTPException):
    """The request body passed ``max_body_bytes`` while it was read.

    An ``HTTPException`` so that FastAPI's body parsing re-raises it instead of turning it
    into a 400.
    """

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_body_bytes} bytes")


def problem(
    scope: Scope,
    status: int,
    problem_type: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Response:
    """A problem+json response for the request of ``scope``."""
    body = problem_body(
        status,
        problem_type,
        detail,
        instance=scope.get("path"),
        request_id=scope.get("state", {}).get("request_id"),
        errors=errors,
    )
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def from_gateway_problem(scope: Scope, exc: GatewayProblem) -> Response:
    """The response for a :class:`GatewayProblem`."""
    return problem(scope, exc.status, exc.problem_type, exc.detail, headers=exc.headers)


def redis_unavailable(scope: Scope, exc: RedisUnavailable) -> Response:
    """503 with ``Retry-After``: auth and rate limits need Redis."""
    log.warning("Redis unavailable: %s", exc)
    return problem(
        scope, 503, "redis-unavailable", "Redis is unavailable", headers={"Retry-After": "1"}
    )


def internal_error(scope: Scope, exc: BaseException) -> Response:
    """500: a bug. Logs the traceback; the client sees none of it."""
    log.error("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return problem(scope, 500, "internal-error", "an internal error occurred")


def install_handlers(app: FastAPI) -> None:
    """Map every exception raised inside the app's routes to a problem document."""

    @app.exception_handler(GatewayProblem)
    async def gateway_problem(request: Request, exc: GatewayProblem) -> Response:
        return from_gateway_problem(request.scope, exc)

    @app.exception_handler(TaskForgeError)
    async def domain_error(request: Request, exc: TaskForgeError) -> Response:
        if isinstance(exc, RedisUnavailable):
            return redis_unavailable(request.scope, exc)
        return internal_error(request.scope, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return problem(
            request.scope,
            422,
            "validation-error",
            "the request is invalid",
            errors=field_errors(exc.errors()),
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:
            # FastAPI's answer to a body that is not even text (invalid UTF-8); invalid JSON
            # is already a 422, so this is one too.
            return problem(
                request.scope,
                422,
                "validation-error",
                "the request is invalid",
                errors=[
                    {"loc": ["body"], "msg": "the body is not UTF-8 JSON", "type": "json_invalid"}
                ],
            )
        problem_type = _HTTP_TYPES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        return problem(request.scope, exc.status_code, problem_type, exc.detail, headers=headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        return internal_error(request.scope, exc)
