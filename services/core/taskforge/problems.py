"""RFC 9457 problem documents, shared by the api and the gateway."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

PROBLEM_BASE = "https://taskforge.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

#: Title of each status TaskForge answers with a problem document.
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


class FieldError(BaseModel):
    """One invalid field of a 422."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(examples=[f"{PROBLEM_BASE}task-not-found"])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


def problem_body(
    status: int,
    problem_type: str,
    detail: str,
    *,
    instance: str | None,
    request_id: str | None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON body of a problem document (unset members left out)."""
    return Problem(
        type=PROBLEM_BASE + problem_type,
        title=TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=instance,
        request_id=request_id,
        errors=[FieldError.model_validate(e) for e in errors] if errors else None,
    ).model_dump(exclude_none=True)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI validation errors reduced to the documented ``FieldError`` members."""
    return [
        {
            "loc": [p for p in err["loc"] if isinstance(p, str | int)],
            "msg": err["msg"],
            "type": err["type"],
        }
        for err in errors
    ]
