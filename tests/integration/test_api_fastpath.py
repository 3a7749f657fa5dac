"""``POST /v1/tasks`` on the api's fast path (taskforge_api.fastpath) against real Redis.

Valid requests are answered by the fast path; everything it would refuse is handed, body
replayed, to the FastAPI route, whose wording the client must still see.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from prometheus_client import REGISTRY

from tests.integration.test_api import TOKEN, api_client, assert_problem
from tests.integration.test_api import api as api  # the fixture


async def test_a_valid_task_is_created_as_the_route_documents(
    api: httpx.AsyncClient, queue_name: str
) -> None:
    traceparent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    response = await api.post(
        "/v1/tasks",
        json={"type": "echo", "queue": queue_name, "payload": {"n": 1}},
        headers={"traceparent": traceparent},
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"id": body["id"], "state": "queued", "created": True}
    assert response.headers["location"] == f"/v1/tasks/{body['id']}"
    record = (await api.get(response.headers["location"])).json()
    assert (record["type"], record["queue"], record["payload"]) == ("echo", queue_name, {"n": 1})
    assert record["traceparent"] == traceparent

    later = await api.post("/v1/tasks", json={"type": "echo", "queue": queue_name, "delay_s": 60})
    assert (later.status_code, later.json()["state"]) == (201, "scheduled")


async def test_an_idempotent_replay_is_200_with_the_first_task(
    api: httpx.AsyncClient, queue_name: str
) -> None:
    task = {"type": "echo", "queue": queue_name}
    first = await api.post("/v1/tasks", json=task, headers={"Idempotency-Key": "k1"})
    again = await api.post("/v1/tasks", json=task, headers={"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "created": False}
    assert again.headers["location"] == first.headers["location"]


async def test_refusals_are_worded_by_the_route(api: httpx.AsyncClient, queue_name: str) -> None:
    task = {"type": "echo", "queue": queue_name}
    empty_key = assert_problem(
        await api.post("/v1/tasks", json=task, headers={"Idempotency-Key": ""}), 422
    )
    assert ["header", "Idempotency-Key"] in [e["loc"] for e in empty_key["errors"]]
    long_trace = assert_problem(
        await api.post("/v1/tasks", json=task, headers={"traceparent": "0" * 257}), 422
    )
    assert ["header", "traceparent"] in [e["loc"] for e in long_trace["errors"]]
    bad_type = assert_problem(await api.post("/v1/tasks", json={**task, "type": "a b"}), 422)
    assert [e["loc"] for e in bad_type["errors"]] == [["body", "type"]]
    assert_problem(await api.post("/v1/tasks", json=[task]), 422)
    assert_problem(
        await api.post("/v1/tasks", json=task, headers={"X-TaskForge-Internal-Token": "wrong"}),
        401,
    )
    # Nothing refused was written: the queue was never even registered.
    assert_problem(await api.get(f"/v1/queues/{queue_name}"), 404)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_a_body_in_several_chunks_is_read_whole_on_both_paths(
    redis_url: str, queue_name: str
) -> None:
    headers = {"content-type": "application/json", "X-TaskForge-Internal-Token": TOKEN}
    async with api_client(redis_url) as api:
        valid = await api.post(
            "/v1/tasks",
            content=_chunks(b'{"type": "echo", ', f'"queue": "{queue_name}"}}'.encode()),
            headers=headers,
        )
        assert valid.status_code == 201, valid.text
        # The route sees the replayed body: its error names the field of the second chunk.
        refused = await api.post(
            "/v1/tasks",
            content=_chunks(b'{"type": "echo", ', b'"max_retries": "3"}'),
            headers=headers,
        )
        body = assert_problem(refused, 422)
        assert [e["loc"] for e in body["errors"]] == [["body", "max_retries"]]


def _requests_total(status_class: str) -> float:
    labels = {"route": "/v1/tasks", "method": "POST", "status_class": status_class}
    return REGISTRY.get_sample_value("taskforge_api_requests_total", labels) or 0.0


async def test_both_paths_count_each_request_once_under_the_route_template(
    api: httpx.AsyncClient, queue_name: str
) -> None:
    created, refused = _requests_total("2xx"), _requests_total("4xx")
    assert (await api.post("/v1/tasks", json={"type": "echo", "queue": queue_name})).is_success
    assert (await api.post("/v1/tasks", json={"type": "a b"})).status_code == 422
    assert (_requests_total("2xx"), _requests_total("4xx")) == (created + 1, refused + 1)
    labels = {"route": "/v1/tasks/{task_id}", "method": "GET", "status_class": "4xx"}
    before = REGISTRY.get_sample_value("taskforge_api_requests_total", labels) or 0.0
    assert (await api.get(f"/v1/tasks/{queue_name}.1")).status_code == 404
    assert REGISTRY.get_sample_value("taskforge_api_requests_total", labels) == before + 1
