"""Request bodies the api refuses at the door: too deep, lone surrogates, non-finite numbers,
loose types, far-future ETAs. Each answer is a 422 naming the field, and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.test_api import api, api_client, assert_problem  # noqa: F401 - fixture

JSON = {"content-type": "application/json"}


def nested(levels: int) -> str:
    """JSON text of ``levels`` nested arrays around a 1."""
    return "[" * levels + "1" + "]" * levels


def task_body(queue: str, payload_json: str) -> bytes:
    return f'{{"type": "echo", "queue": "{queue}", "payload": {payload_json}}}'.encode()


#: (raw payload JSON, path of the refused value under "payload", error type)
BAD_PAYLOADS = [
    pytest.param(nested(256), [0] * 63, "json_too_deep", id="nested-256"),
    pytest.param(nested(64), [0] * 63, "json_too_deep", id="nested-64"),
    pytest.param('{"a": {"b": "\\ud800"}}', ["a", "b"], "json_invalid_text", id="lone-surrogate"),
    # A refused key is named with the surrogate escaped: the problem document is valid UTF-8.
    pytest.param('{"\\udfff": 1}', ["\\udfff"], "json_invalid_text", id="surrogate-key"),
    pytest.param('{"n": NaN}', ["n"], "json_non_finite", id="nan"),
    pytest.param("[1, Infinity]", [1], "json_non_finite", id="infinity"),
    pytest.param('{"n": -Infinity}', ["n"], "json_non_finite", id="minus-infinity"),
    pytest.param('{"n": 1e400}', ["n"], "json_non_finite", id="1e400"),
]


@pytest.mark.parametrize(("payload", "path", "kind"), BAD_PAYLOADS)
async def test_refused_payloads_are_422_naming_the_field_and_write_nothing(
    api: httpx.AsyncClient,  # noqa: F811 - the fixture
    queue_name: str,
    payload: str,
    path: list[Any],
    kind: str,
) -> None:
    for route in ("/v1/tasks", "/enqueue"):
        response = await api.post(route, content=task_body(queue_name, payload), headers=JSON)
        body = assert_problem(response, 422, "validation-error")
        [error] = body["errors"]
        assert error["type"] == kind
        assert error["loc"] == ["body", "payload", *path], error
    batch = f'{{"tasks": [{task_body(queue_name, payload).decode()}]}}'.encode()
    body = assert_problem(await api.post("/v1/tasks/batch", content=batch, headers=JSON), 422)
    assert body["errors"][0]["loc"][:4] == ["body", "tasks", 0, "payload"]
    # Nothing was enqueued: the queue was never even created.
    assert_problem(await api.get(f"/v1/queues/{queue_name}"), 404, "queue-not-found")


async def test_the_depth_limit_is_the_body_nesting_and_configurable(
    redis_url: str, queue_name: str
) -> None:
    async with api_client(redis_url, max_json_depth=5) as api:  # noqa: F811 - a local client
        # The body object is level 1, the payload array level 2: 4 arrays make 5 levels.
        fits = await api.post("/v1/tasks", content=task_body(queue_name, nested(4)), headers=JSON)
        assert fits.status_code == 201, fits.text
        record = (await api.get(f"/v1/tasks/{fits.json()['id']}")).json()
        assert record["payload"] == [[[[1]]]]
        deeper = await api.post("/v1/tasks", content=task_body(queue_name, nested(5)), headers=JSON)
        body = assert_problem(deeper, 422, "validation-error")
        assert "deeper than 5 levels" in body["errors"][0]["msg"]


async def test_default_depth_accepts_64_levels(api: httpx.AsyncClient, queue_name: str) -> None:  # noqa: F811
    response = await api.post("/v1/tasks", content=task_body(queue_name, nested(63)), headers=JSON)
    assert response.status_code == 201, response.text


async def test_extremely_deep_bodies_are_422_not_a_crash(api: httpx.AsyncClient) -> None:  # noqa: F811
    # Deep enough to exhaust the JSON decoder's recursion, still under the body limit.
    response = await api.post("/v1/tasks", content=b"[" * 4000, headers=JSON)
    assert_problem(response, 422, "validation-error")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"type": "echo", "payload": "\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
        pytest.param('{"type": "echo"}'.encode("utf-16"), id="utf-16"),
        pytest.param(b'{"type": "echo", "payload": "\xff"}', id="invalid-byte"),
    ],
)
async def test_bodies_must_be_utf8(api: httpx.AsyncClient, raw: bytes) -> None:  # noqa: F811
    body = assert_problem(await api.post("/v1/tasks", content=raw, headers=JSON), 422)
    assert body["errors"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"max_retries": True}, ["body", "max_retries"]),
        ({"max_retries": 1.0}, ["body", "max_retries"]),
        ({"delay_s": "5"}, ["body", "delay_s"]),
        ({"timeout_s": "1"}, ["body", "timeout_s"]),
        ({"backoff": {"base_s": "1"}}, ["body", "backoff", "base_s"]),
        ({"backoff": {"jitter": "yes"}}, ["body", "backoff", "jitter"]),
        ({"queue": 5}, ["body", "queue"]),
        ({"delay_s": 86_400 * 365 + 1}, ["body", "delay_s"]),
        ({"eta": "9999-12-31T00:00:00Z"}, ["body", "eta"]),
        ({"eta": 1}, ["body", "eta"]),
        ({"eta": 1_700_000_000.5}, ["body", "eta"]),
        ({"eta": "1700000000"}, ["body", "eta"]),
    ],
)
async def test_types_are_strict_and_one_cap_bounds_delay_and_eta(
    api: httpx.AsyncClient,  # noqa: F811
    queue_name: str,
    fields: dict[str, Any],
    loc: list[str],
) -> None:
    body = {"type": "echo", "queue": queue_name, **fields}
    problem = assert_problem(await api.post("/v1/tasks", json=body), 422, "validation-error")
    assert loc in [e["loc"] for e in problem["errors"]], problem
    assert_problem(await api.get(f"/v1/queues/{queue_name}"), 404)


async def test_lawful_numbers_and_etas_still_pass(api: httpx.AsyncClient, queue_name: str) -> None:  # noqa: F811
    soon = (datetime.now(UTC) + timedelta(days=300)).isoformat()
    for fields in (
        {"delay_s": 5, "max_retries": 2, "timeout_s": 1},
        {"eta": soon, "backoff": {"kind": "fixed", "base_s": 1, "jitter": False}},
        {"payload": {"big": 2**70, "small": -1.5e-300, "text": "\u00e9\U0001f600"}},
    ):
        response = await api.post("/v1/tasks", json={"type": "echo", "queue": queue_name, **fields})
        assert response.status_code == 201, (fields, response.text)
