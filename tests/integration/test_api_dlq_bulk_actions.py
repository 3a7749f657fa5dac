"""Bulk DLQ actions take their queue where the listing does (the query string), and acting on
every queue is an explicit ``all=true``: no parameter, a body or a stray filter changes nothing."""

from __future__ import annotations

import httpx

from tests.integration.test_api import api, assert_problem  # noqa: F401 - the fixture


async def kill_one(api: httpx.AsyncClient, queue: str) -> str:  # noqa: F811 - not the fixture
    task_id: str = (await api.post("/v1/tasks", json={"type": "nope", "queue": queue})).json()["id"]
    consumed = (await api.post("/consume-once", params={"queue": queue})).json()
    assert consumed["outcome"] == "dead"
    return task_id


async def dead_count(api: httpx.AsyncClient, queue: str) -> int:  # noqa: F811
    return int((await api.get("/v1/dlq", params={"queue": queue})).json()["total"])


async def test_requeue_and_purge_need_a_queue_or_all(
    api: httpx.AsyncClient,  # noqa: F811 - the fixture
    queue_name: str,
) -> None:
    other = f"{queue_name}-other"
    for queue in (queue_name, other):
        await kill_one(api, queue)
    refused = [
        await api.post("/v1/dlq/requeue"),
        await api.post("/v1/dlq/requeue", json={"queue": queue_name}),
        await api.post("/v1/dlq/requeue", params={"queue": queue_name, "all": "true"}),
        await api.post("/v1/dlq/requeue", params={"queue": queue_name, "reason": "timed_out"}),
        await api.post("/v1/dlq/requeue", params={"all": "false"}),
        await api.delete("/v1/dlq"),
        await api.delete("/v1/dlq", params={"queue": queue_name, "task_type": "nope"}),
        # A purge has no limit: taking one would delete more than the caller asked for.
        await api.delete("/v1/dlq", params={"queue": queue_name, "limit": 1}),
        # An older client's body-borne selection is not silently replaced by the query's.
        await api.post("/v1/dlq/requeue", params={"queue": queue_name}, json={"queue": other}),
    ]
    for response in refused:
        assert_problem(response, 422, "invalid-task")
    assert (await dead_count(api, queue_name), await dead_count(api, other)) == (1, 1)

    requeued = await api.post("/v1/dlq/requeue", params={"queue": queue_name, "limit": 5})
    assert requeued.json() == {"count": 1}
    assert (await dead_count(api, queue_name), await dead_count(api, other)) == (0, 1)
    await api.post("/consume-once", params={"queue": queue_name})
    purged = await api.delete("/v1/dlq", params={"queue": queue_name})
    assert purged.json() == {"count": 1}
    assert await dead_count(api, other) == 1


async def test_all_true_acts_on_every_queue(api: httpx.AsyncClient, queue_name: str) -> None:  # noqa: F811
    queues = [f"{queue_name}-a", f"{queue_name}-b"]
    for queue in queues:
        await kill_one(api, queue)
    requeued = await api.post("/v1/dlq/requeue", params={"all": "true", "limit": 100_000})
    assert requeued.status_code == 200 and requeued.json()["count"] >= 2
    assert [await dead_count(api, q) for q in queues] == [0, 0]
    for queue in queues:
        await api.post("/consume-once", params={"queue": queue})
    purged = await api.delete("/v1/dlq", params={"all": "true"})
    assert purged.status_code == 200 and purged.json()["count"] >= 2
    assert [await dead_count(api, q) for q in queues] == [0, 0]


async def test_the_documented_parameters_are_the_same_on_all_three(api: httpx.AsyncClient) -> None:  # noqa: F811
    paths = (await api.get("/openapi.json")).json()["paths"]["/v1/dlq"]
    requeue = (await api.get("/openapi.json")).json()["paths"]["/v1/dlq/requeue"]["post"]

    def names(operation: dict[str, object]) -> set[str]:
        return {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}  # type: ignore[attr-defined, index]

    assert "requestBody" not in requeue
    assert {"queue", "all", "limit"} == names(requeue)
    assert {"queue", "all"} == names(paths["delete"])
    assert "queue" in names(paths["get"])
