"""RFC 9457 problem documents: every error the gateway itself answers, built in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from taskforge.errors import RedisUnavailable, TaskForgeError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://taskforge.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

#: Title of each status the gateway answers itself.
TITLES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

#: Problem type of a Starlette/FastAPI ``HTTPException`` by status.
_HTTP_TYPES = {404: "not-found", 405: "method-not-allowed", 413: "content-too-large"}


class FieldError(BaseModel):
    """One invalid field of a 422."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(examples=[f"{PROBLEM_BASE}rate-limited"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


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
    body = Problem(
        type=PROBLEM_BASE + problem_type,
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=scope.get("path"),
        request_id=scope.get("state", {}).get("request_id"),
        errors=[FieldError.model_validate(e) for e in errors] if errors else None,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
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


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [p for p in err["loc"] if isinstance(p, str | int)],
            "msg": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]


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
            errors=_field_errors(exc),
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
