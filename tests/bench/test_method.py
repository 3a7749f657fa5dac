"""The bench's measuring method, checked against a real redis-server.

``make test`` leaves tests/bench out; run these with ``pytest tests/bench``.
"""

from __future__ import annotations

from typing import Any

from redis import Redis

from tests.bench.common import ProcessCost, percentile
from tests.bench.floor_app import STREAM, make_app
from tests.bench.redis_costs import per_task, sized_spec, snapshot
from tests.bench.report import Results, Target, table


def test_lua_calls_count_as_commands_and_a_script_as_one_round_trip(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        before = snapshot(client)
        client.eval("redis.call('SET', KEYS[1], 1); return redis.call('INCR', KEYS[1])", 1, "k")
        after = snapshot(client)
        figures, by_name = per_task(before, after, 1)
        assert by_name == {"eval": 1, "set": 1, "incr": 1}
        assert figures["commands"] == 3
        assert figures["round_trips"] == 1
    finally:
        client.close()


def test_a_pipeline_is_one_round_trip(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        before = snapshot(client)
        pipe = client.pipeline(transaction=False)
        for _ in range(10):
            pipe.incr("bench-test-counter")
        pipe.execute()
        figures, _ = per_task(before, snapshot(client), 2)
        assert figures["commands"] == 5  # ten INCRs over two tasks
        assert figures["round_trips"] == 0.5
    finally:
        client.close()


def test_sized_payload_is_exactly_100_bytes() -> None:
    assert len(sized_spec("q").payload_json().encode()) == 100


def test_percentile_is_an_observed_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3


def test_targets_give_ratio_and_verdict_both_ways() -> None:
    results = Results()
    results.add("fast", 5_000, "drain", "tasks/s", Target(">=", 10_000))
    results.add("small", 200, "memory", "bytes", Target("<=", 400))
    assert results.figures["fast"].target is not None
    assert results.figures["fast"].target.ratio(5_000) == 0.5
    assert results.failures() == ["drain"]
    rows = table(results).splitlines()
    assert "MISS" in rows[2] and rows[2].startswith("drain")
    assert rows[3].rstrip().endswith("ok")


async def test_floor_app_writes_the_body_and_answers_202(redis_url: str) -> None:
    from redis.asyncio import Redis as AsyncRedis

    client = AsyncRedis.from_url(redis_url)
    sent: list[dict[str, Any]] = []
    chunks = iter([{"body": b'{"a":', "more_body": True}, {"body": b"1}", "more_body": False}])

    async def receive() -> dict[str, Any]:
        return next(chunks)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    try:
        await make_app(client)({"type": "http"}, receive, send)
        entries = await client.xrevrange(STREAM, count=1)
    finally:
        await client.aclose()
    assert sent[0]["status"] == 202
    assert entries is not None
    assert entries[0][1] == {b"body": b'{"a":1}'}
    entry_id = entries[0][0]
    assert isinstance(entry_id, bytes) and entry_id in sent[1]["body"]


def test_cpu_between_interpolates_the_samples() -> None:
    cost = ProcessCost(3.0, 0, ((1000.0, 1.0), (2000.0, 2.0), (3000.0, 3.0)))
    assert cost.cpu_between(1500, 2500) == 1.0
    assert cost.cpu_between(0, 5000) == 2.0  # nothing before the first or after the last
    assert cost.cpu_between(2000, 2250) == 0.25
