"""Schemathesis against the gateway's OpenAPI document, with and without a key.

Every generated request must get an answer that is not a 5xx and that matches the documented
status codes, content types and schemas. Operations are driven one by one with Hypothesis
(schemathesis's pytest plugin does not load under this pytest version).

Besides the schema's own strategies, bodies are also sent with hostile values put into them:
containers nested hundreds of levels deep, lone surrogates, NaN, infinities and ``1e400``.
Those are written as raw JSON text, since a JSON library refuses to write most of them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
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

#: Generated requests per operation with an admin key, and the least the run must send.
EXAMPLES_PER_OPERATION = 70
MIN_AUTHENTICATED_REQUESTS = 1000

#: Operations whose body holds a task payload, and where in the body that payload is.
PAYLOAD_PATHS: dict[tuple[str, str], tuple[str | int, ...]] = {
    ("POST", "/v1/tasks"): ("payload",),
    ("POST", "/enqueue"): ("payload",),
    ("POST", "/v1/tasks/batch"): ("tasks", 0, "payload"),
}


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value] if levels % 2 else {"k": value}
    return value


#: Values no request may carry into a task: each must be refused with a 422.
HOSTILE = st.one_of(
    st.integers(65, 400).map(nested),
    st.text(
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3
    ).flatmap(lambda bad: st.sampled_from([bad, {"k": [bad]}, {bad: 1}])),
    st.sampled_from([math.nan, math.inf, -math.inf]).map(lambda n: {"n": [n]}),
)


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
    statuses: list[int] = []
    for operation in ops:
        statuses += fuzz(operation, EXAMPLES_PER_OPERATION, headers)
    print(f"authenticated requests: {len(statuses)}, statuses: {sorted(set(statuses))}")
    assert len(statuses) >= MIN_AUTHENTICATED_REQUESTS, len(statuses)
    assert any(200 <= s < 300 for s in statuses), set(statuses)
    assert not [s for s in statuses if s >= 500]


def _put(body: Any, path: tuple[str | int, ...], value: Any) -> bool:
    """Set ``body[path]`` to ``value`` if the containers on the way exist."""
    *parents, last = path
    for step in parents:
        try:
            body = body[step]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(body, dict) and isinstance(last, str):
        body[last] = value
        return True
    return False


def fuzz_hostile(operation: Any, examples: int, headers: dict[str, str]) -> list[int]:
    path = PAYLOAD_PATHS[(operation.method.upper(), operation.path)]
    statuses: list[int] = []

    @hypothesis.given(case=operation.as_strategy(), hostile=HOSTILE)
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def run(case: schemathesis.Case, hostile: Any) -> None:
        body = case.body
        injected = _put(body, path, hostile)
        kwargs = case.as_transport_kwargs(headers=headers)
        kwargs.pop("json", None)
        kwargs["headers"]["Content-Type"] = "application/json"
        # ensure_ascii writes a lone surrogate as the escape "\ud800"; allow_nan writes NaN.
        kwargs["data"] = json.dumps(body, allow_nan=True).encode()
        response = requests.request(**kwargs, timeout=30)
        case.validate_response(response, checks=CHECKS)
        if injected:
            assert response.status_code == 422, response.text
            problem = response.json()
            assert problem["errors"][0]["loc"][: len(path) + 1] == ["body", *path], problem
        statuses.append(response.status_code)

    run()
    return statuses


def test_hostile_values_in_bodies(fuzz_stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {fuzz_stack.admin_key}"}
    ops = [op for op in operations(fuzz_stack) if (op.method.upper(), op.path) in PAYLOAD_PATHS]
    assert len(ops) == len(PAYLOAD_PATHS)
    statuses = [s for op in ops for s in fuzz_hostile(op, 80, headers)]
    print(f"hostile requests: {len(statuses)}, of which 422: {statuses.count(422)}")
    assert statuses.count(422) >= 100, statuses


@pytest.mark.parametrize("scheme", ["none", "bad-key"])
def test_unauthenticated(fuzz_stack: Stack, scheme: str) -> None:
    headers = {} if scheme == "none" else {"X-API-Key": "tfk_" + "A" * 43}
    for operation in operations(fuzz_stack):
        if operation.path in ("/healthz", "/readyz", "/openapi.json"):
            continue
        statuses = fuzz(operation, 5, headers)
        assert set(statuses) <= UNAUTHENTICATED, (operation.path, statuses)
