"""``consume-once`` runs handlers with the same egress guard as the worker (docs/security.md)."""

from __future__ import annotations

import httpx

from tests.integration.test_api import api_client
from tests.support.http_sink import HttpSink


async def _consume_http_task(api: httpx.AsyncClient, queue: str, url: str) -> dict[str, object]:
    task = {"type": "http", "queue": queue, "payload": {"url": url}, "max_retries": 5}
    created = await api.post("/v1/tasks", json=task)
    assert created.status_code == 201, created.text
    consumed = await api.post("/consume-once", params={"queue": queue})
    assert consumed.status_code == 200, consumed.text
    body: dict[str, object] = consumed.json()
    return body


async def test_consume_once_refuses_loopback_without_spending_retries(
    redis_url: str, queue_name: str
) -> None:
    async with HttpSink() as sink, api_client(redis_url) as api:
        consumed = await _consume_http_task(api, queue_name, sink.url)
        assert consumed["outcome"] == "dead"
        task = consumed["task"]
        assert isinstance(task, dict)
        assert task["dead_reason"] == "non_retryable" and task["attempts"] == 1
        assert "127.0.0.1 is not allowed (loopback)" in str(task["last_error"])
        assert sink.requests == []


async def test_consume_once_reaches_an_allowed_network(redis_url: str, queue_name: str) -> None:
    async with (
        HttpSink() as sink,
        api_client(redis_url, http_allow_cidrs="127.0.0.1/32") as api,
    ):
        consumed = await _consume_http_task(api, queue_name, sink.url)
        assert consumed["outcome"] == "succeeded", consumed
        assert len(sink.requests) == 1
