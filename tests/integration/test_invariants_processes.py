"""Invariants 1, 3 and 6 (docs/architecture.md#invariants) with real processes: SIGKILL,
SIGTERM, Redis crashes, probes.

Workers and schedulers run as separate processes started like their images start them
(tests/support/processes.py); their handlers are in tests/support/task_handlers.py and leave
their traces in files, since a SIGKILLed process cannot report anything else.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskforge.broker import Broker
from taskforge.broker.admin import get_task
from taskforge.keys import QueueKeys
from taskforge.models import DeadReason, TaskRecord, TaskSpec, TaskState
from tests.integration.conftest import enqueue
from tests.support.processes import (
    ServiceGroup,
    ServiceProcess,
    read_lines,
    tf_env,
    wait_until,
)
from tests.support.redis_server import RedisServer

#: A worker that notices a dead peer fast: 2 s lease, heartbeat 4 times per lease.
FAST_LEASE = tf_env(lease_s=2, heartbeat_interval_s=0.5, block_ms=200)
#: A scheduler that reclaims and promotes within 0.2 s.
FAST_SCHEDULER = tf_env(tick_s=0.2)
#: Longest wait for one expected transition; generous for a loaded 2-core CI runner.
STEP_TIMEOUT_S = 30.0


@pytest.fixture
def services(tmp_path: Path) -> Iterator[ServiceGroup]:
    """Processes of the test; all SIGKILLed at its end, logs under tmp_path/logs."""
    with ServiceGroup(log_dir=tmp_path / "logs") as group:
        yield group


async def wait_for_state(
    broker: Broker,
    task_id: str,
    state: TaskState,
    processes: list[ServiceProcess],
    timeout_s: float = STEP_TIMEOUT_S,
) -> TaskRecord:
    """Wait until the task is in ``state``; the failure names the state it was left in."""
    last: list[TaskRecord] = []

    async def reached() -> TaskRecord | None:
        record = await get_task(broker, task_id)
        last[:] = [record]
        return record if record.state is state else None

    def describe() -> str:
        if not last:
            return f"{task_id} never read"
        events = [e.event for e in last[0].events]
        return f"{task_id} is {last[0].state} (want {state}), events {events}"

    result: TaskRecord = await wait_until(reached, timeout_s, message=describe, processes=processes)
    return result


async def outcome_waits(worker: ServiceProcess, redis: Broker) -> bool:
    """True once ``worker`` produced an outcome and a script call of it waits in a pause.

    The metric counts the outcome just before it is handed to the finisher, whose finish
    call then leaves at once; CLIENT PAUSE holds it (flag ``b``, command ``evalsha``).
    """
    if not worker.metric("taskforge_tasks_finished_total", outcome="succeeded"):
        return False
    clients = await redis.redis.client_list()
    return any(c["cmd"] == "evalsha" and "b" in c["flags"] for c in clients)


def event_names(record: TaskRecord) -> list[str]:
    return [e.event for e in record.events]


# -- 1 and 3: a SIGKILLed worker's task is finished by another worker after its lease --------


async def test_task_whose_worker_dies_is_finished_by_another_worker(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    marker = tmp_path / "crashed-once"
    [task] = await enqueue(
        broker, TaskSpec(type="crash_once", queue=queue_name, payload={"marker": str(marker)})
    )
    first = services.worker(redis_url, queue_name, env=FAST_LEASE)
    await wait_until(
        lambda: first.poll() is not None,
        STEP_TIMEOUT_S,
        message="the crash_once task did not kill its worker",
        processes=[first],
    )
    assert first.returncode == -signal.SIGKILL
    held = await get_task(broker, task.task_id)
    assert (held.state, held.attempts) == (TaskState.RUNNING, 1)  # leased to a dead worker

    second = services.worker(redis_url, queue_name, env=FAST_LEASE)
    services.scheduler(redis_url, env=FAST_SCHEDULER)
    record = await wait_for_state(broker, task.task_id, TaskState.SUCCEEDED, services.processes)

    assert record.attempts == 2
    assert record.result == {"attempt": 2}
    assert event_names(record) == ["enqueued", "started", "abandoned", "started", "succeeded"]
    starters = [e.worker or "" for e in record.events if e.event == "started"]
    assert f"-{first.pid}-" in starters[0]
    assert f"-{second.pid}-" in starters[1]
    assert f"-{second.pid}-" in (record.worker or "")


async def test_worker_sigkilled_mid_handler_task_reruns_elsewhere(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    [task] = await enqueue(
        broker,
        TaskSpec(
            type="slow", queue=queue_name, payload={"seconds": 2, "started_marker": str(started)}
        ),
    )
    first = services.worker(redis_url, queue_name, env=FAST_LEASE)
    await wait_until(
        lambda: read_lines(started), STEP_TIMEOUT_S, message="never started", processes=[first]
    )
    first.kill()
    held = await get_task(broker, task.task_id)
    assert (held.state, held.attempts) == (TaskState.RUNNING, 1)

    services.worker(redis_url, queue_name, env=FAST_LEASE)
    services.scheduler(redis_url, env=FAST_SCHEDULER)
    record = await wait_for_state(broker, task.task_id, TaskState.SUCCEEDED, services.processes)

    assert record.attempts == 2
    assert "abandoned" in event_names(record)
    assert read_lines(started) == [task.task_id, task.task_id]


async def test_tasks_waiting_behind_a_killed_worker_are_not_held_by_it(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    busy = TaskSpec(
        type="slow", queue=queue_name, payload={"seconds": 60, "started_marker": str(started)}
    )
    waits = TaskSpec(type="slow", queue=queue_name, payload={"seconds": 1})
    running, waiting = await enqueue(broker, busy, waits)
    first = services.worker(redis_url, queue_name, env=tf_env(concurrency=1, block_ms=200))
    await wait_until(lambda: read_lines(started), STEP_TIMEOUT_S, processes=[first])
    await asyncio.sleep(0.3)  # the only slot is busy: the fetch loop waits and holds nothing
    first.kill()

    services.worker(redis_url, queue_name, env=tf_env(concurrency=1, block_ms=200))
    # No scheduler runs: only what the dead worker held needs one.
    record = await wait_for_state(broker, waiting.task_id, TaskState.SUCCEEDED, services.processes)
    assert record.attempts == 1
    assert event_names(record) == ["enqueued", "started", "succeeded"]
    assert (await get_task(broker, running.task_id)).state is TaskState.RUNNING  # until reclaimed


async def test_worker_killed_after_handler_before_outcome_recorded_task_reruns(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started, done = tmp_path / "started", tmp_path / "done"
    payload = {"seconds": 0.5, "started_marker": str(started), "done_marker": str(done)}
    # A server of its own: CLIENT PAUSE holds every client's writes.
    with RedisServer(dir=tmp_path / "redis") as server:
        admin = Broker.from_url(server.url)
        try:
            [task] = await enqueue(admin, TaskSpec(type="slow", queue=queue_name, payload=payload))
            first = services.worker(server.url, queue_name, env=FAST_LEASE)
            await wait_until(lambda: read_lines(started), STEP_TIMEOUT_S, processes=[first])
            await admin.redis.client_pause(10_000, all=False)  # scripts wait; reads go on
            await wait_until(lambda: read_lines(done), STEP_TIMEOUT_S, processes=[first])
            await wait_until(lambda: outcome_waits(first, admin), STEP_TIMEOUT_S, processes=[first])
            first.kill()
            await admin.redis.client_unpause()
            held = await get_task(admin, task.task_id)
            assert (held.state, held.attempts) == (TaskState.RUNNING, 1)

            services.worker(server.url, queue_name, env=FAST_LEASE)
            services.scheduler(server.url, env=FAST_SCHEDULER)
            record = await wait_for_state(
                admin, task.task_id, TaskState.SUCCEEDED, services.processes
            )
        finally:
            await admin.close()
    assert record.attempts == 2
    assert "abandoned" in event_names(record)
    assert read_lines(done) == [task.task_id, task.task_id]  # the handler's work, done twice


async def test_worker_stopped_past_its_lease_has_its_late_outcome_refused(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started, done = tmp_path / "started", tmp_path / "done"
    payload = {"seconds": 2, "started_marker": str(started), "done_marker": str(done)}
    # A server of its own: CLIENT PAUSE holds every client's writes.
    with RedisServer(dir=tmp_path / "redis") as server:
        admin = Broker.from_url(server.url)
        try:
            [task] = await enqueue(admin, TaskSpec(type="slow", queue=queue_name, payload=payload))
            frozen = services.worker(server.url, queue_name, env=FAST_LEASE)
            await wait_until(lambda: read_lines(started), STEP_TIMEOUT_S, processes=[frozen])
            frozen.send(signal.SIGSTOP)  # alive but silent: no heartbeat, no finish
            services.scheduler(server.url, env=FAST_SCHEDULER)
            later = services.worker(server.url, queue_name, env=FAST_LEASE)
            record = await wait_for_state(admin, task.task_id, TaskState.SUCCEEDED, [later])
            # Thawed with writes paused, the worker's overdue handler returns before any
            # heartbeat can tell it the lease is gone: its outcome goes to a finish call.
            await admin.redis.client_pause(10_000, all=False)
            frozen.send(signal.SIGCONT)
            await wait_until(
                lambda: outcome_waits(frozen, admin), STEP_TIMEOUT_S, processes=[frozen]
            )
            await admin.redis.client_unpause()
            await wait_until(
                lambda: "dropped outcomes of 1 task(s) whose lease was lost" in frozen.log_text(),
                STEP_TIMEOUT_S,
                processes=[frozen],
            )
            final = await get_task(admin, task.task_id)
        finally:
            await admin.close()  # the group SIGKILLs the processes, stopped ones included
    assert read_lines(done) == [task.task_id, task.task_id]  # both attempts ran to the end
    assert final == record  # the refused outcome changed nothing
    assert (final.attempts, final.result) == (2, {"slept_s": 2.0})
    assert event_names(final) == ["enqueued", "started", "abandoned", "started", "succeeded"]
    assert f"-{later.pid}-" in (final.worker or "")
    assert frozen.metric("taskforge_worker_leases_lost_total", queue=queue_name) == 1


async def test_task_that_kills_every_worker_ends_dead_abandoned(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    max_retries = 2
    [task] = await enqueue(
        broker,
        TaskSpec(
            type="crash", queue=queue_name, max_retries=max_retries, payload={"path": str(runs)}
        ),
    )
    services.scheduler(redis_url, env=FAST_SCHEDULER)
    workers: list[ServiceProcess] = []
    worker_env = tf_env(lease_s=1, heartbeat_interval_s=0.25, block_ms=200)

    async def dead_or_restart_worker() -> TaskRecord | None:
        """A supervisor, as Kubernetes is: start a new worker whenever the last one died."""
        record = await get_task(broker, task.task_id)
        if record.state is TaskState.DEAD:
            return record
        if not workers or workers[-1].poll() is not None:
            workers.append(services.worker(redis_url, queue_name, env=worker_env))
        return None

    record: TaskRecord = await wait_until(
        dead_or_restart_worker,
        60,
        interval_s=0.1,
        message=lambda: f"not dead; handler ran {len(read_lines(runs))} time(s)",
        processes=services.processes,
    )

    assert record.dead_reason is DeadReason.ABANDONED
    assert read_lines(runs) == [task.task_id] * (max_retries + 1)
    assert [w.poll() for w in workers[:-1]] == [-signal.SIGKILL] * (max_retries + 1)
    assert workers[-1].poll() is None  # the worker that dead-lettered it did not run it
    names = event_names(record)
    assert names.count("abandoned") == max_retries + 1
    assert names[-1] == "dead"


# -- 6: SIGTERM finishes what fits in the grace period and gives back the rest ----------------


async def test_sigterm_finishes_short_tasks_and_gives_back_long_ones(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started = tmp_path / "started"

    def slow(seconds: float) -> TaskSpec:
        payload = {"seconds": seconds, "started_marker": str(started)}
        return TaskSpec(type="slow", queue=queue_name, payload=payload)

    short = await enqueue(broker, *[slow(0.6) for _ in range(4)])
    long = await enqueue(broker, *[slow(30) for _ in range(4)])
    worker = services.worker(
        redis_url,
        queue_name,
        # Free slots left: the fetch loop is waiting for work, as in the common case (with
        # every slot busy see test_sigterm_with_every_slot_busy_gives_back_within_grace).
        env=tf_env(concurrency=16, shutdown_grace_s=1, lease_s=10, heartbeat_interval_s=1),
    )
    await wait_until(
        lambda: len(read_lines(started)) == 8,
        STEP_TIMEOUT_S,
        message=lambda: f"{len(read_lines(started))} of 8 tasks started",
        processes=[worker],
    )
    secs, micros = await broker.redis.time()  # the clock finish.lua stamps finished_at with
    sigterm_at = datetime.fromtimestamp(secs + micros // 1000 / 1000, UTC)
    sent = time.monotonic()
    worker.send(signal.SIGTERM)

    assert worker.wait(10) == 0
    assert time.monotonic() - sent < 10
    for result in short:  # in flight at SIGTERM, finished within the grace period
        record = await get_task(broker, result.task_id)
        assert record.state is TaskState.SUCCEEDED, event_names(record)
        assert record.finished_at is not None
        assert record.finished_at >= sigterm_at
    for result in long:  # given back without spending an attempt
        record = await get_task(broker, result.task_id)
        assert (record.state, record.attempts) == (TaskState.QUEUED, 0)
        assert event_names(record)[-1] == "returned"
    keys = QueueKeys(queue_name)
    assert await broker.redis.zcard(keys.leases) == 0
    assert (await broker.redis.xpending(keys.stream, broker.group))["pending"] == 0
    assert await broker.redis.xlen(keys.stream) == 4  # the four given back, ready again
    assert "giving back 4 task(s)" in worker.log_text()


async def test_sigterm_with_every_slot_busy_gives_back_within_grace(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    payload = {"seconds": 8, "started_marker": str(started)}
    tasks = await enqueue(
        broker, *[TaskSpec(type="slow", queue=queue_name, payload=payload) for _ in range(2)]
    )
    worker = services.worker(
        redis_url,
        queue_name,
        env=tf_env(concurrency=2, shutdown_grace_s=1, lease_s=10, heartbeat_interval_s=1),
    )
    await wait_until(lambda: len(read_lines(started)) == 2, STEP_TIMEOUT_S, processes=[worker])
    worker.send(signal.SIGTERM)

    assert worker.wait(5) == 0  # grace 1 s, plus room for the final flush
    for result in tasks:
        record = await get_task(broker, result.task_id)
        assert (record.state, record.attempts) == (TaskState.QUEUED, 0)


# -- 1: Redis crash and restart --------------------------------------------------------------


async def test_enqueued_tasks_survive_redis_crash_with_aof(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    with RedisServer(dir=tmp_path / "redis", extra_args=aof) as server:
        producer = Broker.from_url(server.url)
        try:
            spec = TaskSpec(type="record", queue=queue_name, payload={"path": str(ran)})
            results = await enqueue(producer, *[spec.model_copy() for _ in range(500)])
        finally:
            await producer.close()

        server.restart(kill=True)  # SIGKILL: no shutdown save, only what the AOF holds

        worker = services.worker(server.url, queue_name, env=tf_env(concurrency=32))
        broker = Broker.from_url(server.url)
        try:
            counters = QueueKeys(queue_name).counters
            await wait_until(
                lambda: _counter_is(broker, counters, "succeeded", 500),
                STEP_TIMEOUT_S,
                message=lambda: f"{len(read_lines(ran))} of 500 ran",
                processes=[worker],
            )
            states = {(await get_task(broker, r.task_id)).state for r in results}
        finally:
            await broker.close()
    assert states == {TaskState.SUCCEEDED}
    assert set(read_lines(ran)) == {r.task_id for r in results}  # each at least once


async def test_running_task_survives_redis_crash_longer_than_its_lease(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    payload = {"seconds": 1.5, "started_marker": str(started)}
    with RedisServer(dir=tmp_path / "redis", extra_args=aof) as server:
        broker = Broker.from_url(server.url)
        try:
            [task] = await enqueue(broker, TaskSpec(type="slow", queue=queue_name, payload=payload))
        finally:
            await broker.close()
        worker = services.worker(server.url, queue_name, env=FAST_LEASE)
        services.scheduler(server.url, env=FAST_SCHEDULER)
        await wait_until(lambda: read_lines(started), STEP_TIMEOUT_S, processes=[worker])

        server.stop(kill=True)
        await asyncio.sleep(3)  # the 2 s lease lapses; the handler ends with Redis away
        server.start()

        broker = Broker.from_url(server.url)
        try:
            record = await wait_for_state(
                broker, task.task_id, TaskState.SUCCEEDED, services.processes
            )
            leases = await broker.redis.zcard(QueueKeys(queue_name).leases)
        finally:
            await broker.close()
    assert worker.poll() is None
    assert leases == 0
    # Whether the first attempt's outcome or the scheduler's reclaim got there first, the
    # attempts count the runs that started.
    assert record.attempts == len(read_lines(started)) in (1, 2)


async def _counter_is(broker: Broker, key: str, field: str, value: int) -> bool:
    return int(await broker.redis.hget(key, field) or 0) == value


async def test_worker_rides_out_redis_outage(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    spec = TaskSpec(type="record", queue=queue_name, payload={"path": str(ran)})
    with RedisServer(dir=tmp_path / "redis") as server:
        worker = services.worker(server.url, queue_name, env=tf_env(block_ms=200))
        await worker.wait_ready()
        before = await _enqueue_once(server.url, spec)
        await wait_until(lambda: read_lines(ran) == [before], STEP_TIMEOUT_S, processes=[worker])

        server.stop(kill=True)
        await wait_until(
            lambda: worker.status("/readyz") == 503,
            STEP_TIMEOUT_S,
            message="/readyz did not fail while Redis was down",
            processes=[worker],
        )
        await asyncio.sleep(2)  # a while without Redis: the worker retries with backoff
        assert worker.poll() is None, worker.describe()
        assert worker.status("/healthz") == 200  # alive: no restart for an outage of Redis

        server.start()
        await wait_until(
            lambda: worker.status("/readyz") == 200,
            STEP_TIMEOUT_S,
            message="/readyz did not recover after Redis came back",
            processes=[worker],
        )
        after = await _enqueue_once(server.url, spec)
        await wait_until(
            lambda: read_lines(ran) == [before, after], STEP_TIMEOUT_S, processes=[worker]
        )


async def _enqueue_once(url: str, spec: TaskSpec) -> str:
    """Enqueue on a fresh connection (the server may have restarted since the last one)."""
    broker = Broker.from_url(url)
    try:
        [result] = await enqueue(broker, spec)
    finally:
        await broker.close()
    return result.task_id


async def test_worker_waits_out_redis_out_of_memory(
    queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    spec = TaskSpec(type="record", queue=queue_name, payload={"path": str(ran)})
    with RedisServer(
        dir=tmp_path / "redis", extra_args=["--maxmemory-policy", "noeviction"]
    ) as server:
        task_id = await _enqueue_once(server.url, spec)
        admin = Broker.from_url(server.url)
        try:
            await admin.redis.config_set("maxmemory", "1")  # every write now fails with OOM
            worker = services.worker(server.url, queue_name, env=tf_env(block_ms=200))
            await wait_until(
                lambda: worker.status("/readyz") == 503,
                STEP_TIMEOUT_S,
                message="/readyz did not report the refusing Redis",
                processes=[worker],
            )
            await asyncio.sleep(1)  # fetch keeps failing with OOM; the worker must stay up
            assert worker.poll() is None, worker.describe()
            assert worker.status("/readyz") == 503
            await admin.redis.config_set("maxmemory", "0")
            await wait_until(
                lambda: read_lines(ran) == [task_id], STEP_TIMEOUT_S, processes=[worker]
            )
        finally:
            await admin.close()


# -- probes and priority ---------------------------------------------------------------------


async def test_healthz_fails_while_a_handler_blocks_the_event_loop(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    worker = services.worker(redis_url, queue_name, env=tf_env(stall_timeout_s=1, block_ms=200))
    await worker.wait_ready()
    assert worker.get("/healthz") == (200, "ok\n")

    payload = {"seconds": 5, "started_marker": str(started)}
    [task] = await enqueue(broker, TaskSpec(type="block_loop", queue=queue_name, payload=payload))
    await wait_until(lambda: read_lines(started), STEP_TIMEOUT_S, processes=[worker])

    def unhealthy() -> tuple[int, str] | None:
        reply = worker.get("/healthz")
        return reply if reply is not None and reply[0] == 503 else None

    _, body = await wait_until(unhealthy, 4, message="/healthz stayed 200", processes=[worker])
    assert "event loop blocked" in body
    assert (await get_task(broker, task.task_id)).state is TaskState.RUNNING  # still blocking

    await wait_until(
        lambda: worker.status("/healthz") == 200,
        STEP_TIMEOUT_S,
        message="/healthz did not recover once the loop turned again",
        processes=[worker],
    )
    await wait_for_state(broker, task.task_id, TaskState.SUCCEEDED, [worker])


async def test_idle_worker_stays_live_while_waiting_for_work(
    redis_url: str, queue_name: str, services: ServiceGroup
) -> None:
    worker = services.worker(redis_url, queue_name, env=tf_env(stall_timeout_s=1, block_ms=2500))
    await worker.wait_ready()
    replies = []
    for _ in range(30):  # 3 s: more than one blocking wait, three stall timeouts
        replies.append(worker.get("/healthz"))
        await asyncio.sleep(0.1)
    assert {r for r in replies if r != (200, "ok\n")} == set()


async def test_worker_empties_higher_priority_queue_first(
    broker: Broker, redis_url: str, queue_name: str, services: ServiceGroup, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    high, low = f"{queue_name}-high", f"{queue_name}-low"

    def specs(queue: str) -> list[TaskSpec]:
        return [TaskSpec(type="record", queue=queue, payload={"path": str(ran)})] * 50

    low_ids = {r.task_id for r in await enqueue(broker, *specs(low))}
    high_ids = {r.task_id for r in await enqueue(broker, *specs(high))}
    worker = services.worker(redis_url, [high, low], env=tf_env(concurrency=1, block_ms=200))
    await wait_until(
        lambda: len(read_lines(ran)) == 100,
        STEP_TIMEOUT_S,
        message=lambda: f"{len(read_lines(ran))} of 100 ran",
        processes=[worker],
    )
    order = read_lines(ran)
    assert set(order[:50]) == high_ids
    assert set(order[50:]) == low_ids
