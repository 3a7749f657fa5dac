"""The public OpenAPI document: the api's own, merged with what the gateway adds.

The gateway adds its key routes, the two security schemes (applied globally), the ``Problem``
schema, and on every operation the responses the gateway itself can answer, plus the
``X-Request-Id`` and ``RateLimit-*`` response headers. Operations the gateway does not route
are dropped, so that the document stays exact.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

from taskforge.problems import PROBLEM_MEDIA_TYPE, TITLES
from taskforge_gateway.problems import GatewayProblem
from taskforge_gateway.proxy import INTERNAL_TOKEN_HEADER
from taskforge_gateway.routing import rule_for_operation
from taskforge_gateway.runtime import Gateway
from taskforge_gateway.upstream import UpstreamError

log = logging.getLogger(__name__)

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

#: The Problem schema component (RFC 9457 plus ``request_id`` and 422 field errors).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}

HEADERS: dict[str, Any] = {
    "X-Request-Id": {
        "description": "The request's id (the client's, if well formed), also in logs.",
        "required": True,
        "schema": {"type": "string"},
    },
    "RateLimit-Limit": {
        "description": "The key's burst: requests a full bucket admits at once.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Requests the key may still send right now.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the key's bucket is full again.",
        "schema": {"type": "integer"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    },
    "WWW-Authenticate": {
        "description": "The authentication challenge (Bearer).",
        "schema": {"type": "string"},
    },
}

#: Statuses the gateway answers on an authenticated operation, with their description.
GATEWAY_RESPONSES = {
    401: "No API key, or an invalid or revoked one.",
    403: "The API key lacks the scope this operation needs.",
    413: "The request body is larger than the gateway's limit.",
    429: "Rate limit of the key exceeded, or too many failed authentications.",
    502: "The api is unavailable.",
    503: "Redis (or the api) is unavailable; retry after Retry-After.",
    504: "The api did not answer in time.",
}

#: Trace headers the gateway validates itself, with what it does with them.
TRACE_HEADERS = {
    "traceparent": "W3C trace context, continued to the api; a missing or invalid value "
    "starts a new trace.",
    "tracestate": "W3C vendor trace state; dropped when traceparent is missing or invalid.",
}

_RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _response_headers(status: str) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": _ref("headers", "X-Request-Id")}
    if status != "401":
        headers.update({name: _ref("headers", name) for name in _RATE_HEADERS})
    if status in ("429", "503"):
        headers["Retry-After"] = _ref("headers", "Retry-After")
    if status in ("401", "403"):
        headers["WWW-Authenticate"] = _ref("headers", "WWW-Authenticate")
    return headers


def _add_problem(responses: dict[str, Any], status: int, description: str) -> None:
    entry = responses.setdefault(str(status), {"description": description})
    entry.setdefault("content", {}).setdefault(
        PROBLEM_MEDIA_TYPE, {"schema": _ref("schemas", "Problem")}
    )


def _errors_as_problems(responses: dict[str, Any]) -> None:
    """Document the api's error bodies under the media type they are sent with."""
    for code, response in responses.items():
        content = response.get("content", {}) if isinstance(response, dict) else {}
        if code[:1] in ("4", "5") and "application/json" in content:
            content.setdefault(PROBLEM_MEDIA_TYPE, content.pop("application/json"))


def _relax_trace_headers(operation: dict[str, Any]) -> None:
    """The gateway replaces an invalid ``traceparent`` instead of refusing it (W3C)."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "header" and parameter.get("name", "").lower() in TRACE_HEADERS:
            parameter["schema"] = {"type": "string"}
            parameter["description"] = TRACE_HEADERS[parameter["name"].lower()]


def decorate_operation(method: str, path: str, operation: dict[str, Any]) -> None:
    """Add the gateway's responses and headers to one operation."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    _errors_as_problems(responses)
    _relax_trace_headers(operation)
    statuses = dict(GATEWAY_RESPONSES)
    if method in ("post", "put", "patch"):
        statuses[415] = "The request body is not application/json."
    if "{" in path:
        statuses[404] = TITLES[404] + ": no such resource."
    for status, description in statuses.items():
        _add_problem(responses, status, description)
    for code, response in responses.items():
        if isinstance(response, dict) and "$ref" not in response:
            response.setdefault("headers", {}).update(_response_headers(code))


def merge(upstream: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The public document: ``upstream`` (the api's) with the gateway's ``own`` routes."""
    doc = copy.deepcopy(upstream)
    paths: dict[str, Any] = {}
    for path, item in {**doc.get("paths", {}), **copy.deepcopy(own.get("paths", {}))}.items():
        kept = {
            method: op
            for method, op in item.items()
            if method not in HTTP_METHODS or rule_for_operation(method, path) is not None
        }
        dropped = sorted(m for m in item if m not in kept)
        if dropped:
            log.warning("OpenAPI: the gateway does not route %s %s", dropped, path)
        if any(m in HTTP_METHODS for m in kept):
            paths[path] = kept
            for method in HTTP_METHODS & kept.keys():
                decorate_operation(method, path, kept[method])
    doc["paths"] = paths
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in own.get("components", {}).get("schemas", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("Problem", PROBLEM_SCHEMA)
    components.setdefault("headers", {}).update(HEADERS)
    components["securitySchemes"] = SECURITY_SCHEMES
    doc["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
    return doc


async def public_document(gateway: Gateway, own: dict[str, Any]) -> dict[str, Any]:
    """The merged document, built from the api's the first time it answers, then cached.

    Raises:
        GatewayProblem: 502 or 504 while the api cannot serve its document.
    """
    if gateway.openapi is not None:
        return gateway.openapi
    token = gateway.settings.internal_token.get_secret_value()
    try:
        answer = await gateway.http.request("GET", "/openapi.json", {INTERNAL_TOKEN_HEADER: token})
        status = answer.status
        document = json.loads(answer.body) if status == 200 else None
    except TimeoutError as exc:
        raise GatewayProblem(504, "upstream-timeout", "the api did not answer in time") from exc
    except (UpstreamError, ValueError) as exc:
        raise GatewayProblem(502, "upstream-unavailable", "the api is unavailable") from exc
    if not isinstance(document, dict):
        raise GatewayProblem(
            502, "upstream-unavailable", f"the api answered {status} for its OpenAPI document"
        )
    gateway.openapi = merge(document, own)
    return gateway.openapi
