"""Schemathesis against the gateway's OpenAPI document, with and without a key.

Every generated request must get an answer that is not a 5xx and that matches the documented
status codes, content types and schemas. Operations are driven one by one with Hypothesis
(schemathesis's pytest plugin does not load under this pytest version).
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import checks

from scripts.devstack import Stack

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
#: Statuses an unauthenticated request may get: nothing reaches the api without a key.
UNAUTHENTICATED = {401, 404, 405, 413, 415, 422, 429}


def operations(stack: Stack) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operation: Any, examples: int, headers: dict[str, str]) -> list[int]:
    statuses: list[int] = []

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses.append(response.status_code)

    run()
    return statuses


def test_authenticated(fuzz_stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {fuzz_stack.admin_key}"}
    ops = operations(fuzz_stack)
    assert len(ops) >= 15
    seen: set[int] = set()
    for operation in ops:
        seen.update(fuzz(operation, 30, headers))
    assert any(200 <= s < 300 for s in seen), seen


@pytest.mark.parametrize("scheme", ["none", "bad-key"])
def test_unauthenticated(fuzz_stack: Stack, scheme: str) -> None:
    headers = {} if scheme == "none" else {"X-API-Key": "tfk_" + "A" * 43}
    for operation in operations(fuzz_stack):
        if operation.path in ("/healthz", "/readyz", "/openapi.json"):
            continue
        statuses = fuzz(operation, 5, headers)
        assert set(statuses) <= UNAUTHENTICATED, (operation.path, statuses)
