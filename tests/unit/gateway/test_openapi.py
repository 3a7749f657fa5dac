"""The public OpenAPI document: the api's, merged with the gateway's routes and responses."""

from __future__ import annotations

from typing import Any

import pytest

from taskforge_gateway.openapi import merge
from taskforge_gateway.routing import RULES, Target
from tests.support.ports import free_port
from tests.unit.gateway.support import INTERNAL_TOKEN, MakeGateway, assert_problem
from tests.unit.gateway.upstream import OPENAPI, Upstream

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture
async def document(make_gateway: MakeGateway, upstream: Upstream) -> dict[str, Any]:
    async with make_gateway() as gateway:
        response = await gateway.get("/openapi.json")
        calls = upstream.openapi_calls
        assert (await gateway.get("/openapi.json")).json() == response.json()
        assert upstream.openapi_calls == calls, "the merged document is cached"
    assert response.status_code == 200
    assert upstream.openapi_headers[-1]["x-taskforge-internal-token"] == INTERNAL_TOKEN
    body: dict[str, Any] = response.json()
    return body


def _problem_statuses(operation: dict[str, Any]) -> set[int]:
    return {
        int(code)
        for code, response in operation["responses"].items()
        if response.get("content", {}).get("application/problem+json", {}).get("schema")
        == PROBLEM_REF
    }


def test_security_schemes_apply_globally(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer",
    }
    assert schemes["apiKeyHeader"]["in"] == "header"
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    assert document["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]


def test_gateway_responses_on_proxied_operations(document: dict[str, Any]) -> None:
    create = document["paths"]["/v1/tasks"]["post"]
    read = document["paths"]["/v1/tasks/{task_id}"]["get"]
    purge = document["paths"]["/v1/dlq"]["delete"]
    assert {401, 403, 413, 415, 422, 429, 502, 503, 504} <= _problem_statuses(create)
    assert _problem_statuses(read) == {401, 403, 404, 413, 429, 502, 503, 504}
    assert _problem_statuses(purge) == {401, 403, 413, 429, 502, 503, 504}
    assert "application/json" not in create["responses"]["422"]["content"]


def test_rate_limit_and_request_id_headers_are_documented(document: dict[str, Any]) -> None:
    responses = document["paths"]["/v1/tasks"]["post"]["responses"]
    ok_headers = responses["201"]["headers"]
    for name in ("X-Request-Id", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert ok_headers[name] == {"$ref": f"#/components/headers/{name}"}
        assert name in document["components"]["headers"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "RateLimit-Limit" not in responses["401"]["headers"]
    assert "WWW-Authenticate" in responses["401"]["headers"]


def test_trace_header_constraints_are_relaxed(document: dict[str, Any]) -> None:
    (parameter,) = document["paths"]["/v1/tasks"]["post"]["parameters"]
    assert parameter["name"] == "traceparent"
    assert parameter["schema"] == {"type": "string"}


def test_key_routes_added_and_unrouted_api_paths_dropped(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert set(paths["/v1/keys"]) == {"get", "post"}
    assert set(paths["/v1/keys/{key_id}"]) == {"delete"}
    assert "/internal/debug" not in paths
    create_key = paths["/v1/keys"]["post"]
    assert create_key["responses"]["422"]["content"]["application/problem+json"]["schema"] == (
        PROBLEM_REF
    )
    assert _problem_statuses(paths["/v1/keys/{key_id}"]["delete"]) >= {401, 403, 404, 429}
    for name in ("KeyCreate", "KeyCreated", "KeyList", "KeyInfo"):
        assert name in document["components"]["schemas"]


def test_the_apis_problem_schema_is_kept(document: dict[str, Any]) -> None:
    assert (
        document["components"]["schemas"]["Problem"]
        == (OPENAPI["components"]["schemas"]["Problem"])
    )


def test_every_routed_operation_is_documented_once_known() -> None:
    """Merging a document listing every routed operation keeps each one."""
    paths: dict[str, Any] = {}
    for rule in RULES:
        if rule.target is Target.UPSTREAM:
            paths.setdefault(rule.template, {})[rule.method.lower()] = {"responses": {}}
    merged = merge({"openapi": "3.1.0", "paths": paths}, {"paths": {}})
    assert merged["paths"].keys() == paths.keys()
    assert "Problem" in merged["components"]["schemas"]
    for item in merged["paths"].values():
        for operation in item.values():
            assert {401, 403, 413, 429, 502, 503, 504} <= _problem_statuses(operation)


async def test_api_unavailable_is_502(make_gateway: MakeGateway) -> None:
    async with make_gateway(api_url=f"http://127.0.0.1:{free_port()}") as gateway:
        response = await gateway.get("/openapi.json")
    assert_problem(response, 502, "upstream-unavailable")
