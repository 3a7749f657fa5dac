"""One chaos run: produce through the gateway while a controller kills everything, then check.

The controller has two loops. One SIGKILLs a random worker every 1 to 3 s (one time in four
it sends SIGTERM to a ready worker instead: a graceful restart) and starts a replacement at
once. The other kills, in turn, the api, the gateway, Redis (SIGKILL, restarted on its AOF) and
the scheduler, one every ``service_every_s`` on average. When the storm ends, the drain waits
until every task is terminal, then the checker compares ledger, executions and final records.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from taskforge.keys import QueueKeys
from tests.chaos.checker import TERMINAL, Executions, FinalRecord, Verdict, check, summary_line
from tests.chaos.cluster import CONCURRENCY, ChaosCluster, FsyncMode
from tests.chaos.producer import Ledger, produce


@dataclass(frozen=True)
class ChaosConfig:
    """The scale of a run."""

    fsync: FsyncMode
    tasks: int
    storm_s: float
    service_every_s: float
    drain_s: float = 180.0
    seed: int = 20261201


@dataclass
class ChaosResult:
    """What a run measured: the summary line, the verdict and the details behind them."""

    line: str
    verdict: Verdict
    kills: Counter[str]
    ledger: Ledger
    #: The most duplicate executions the run's kills can cause (see :func:`duplicate_bound`).
    duplicate_bound: int
    details: dict[str, object] = field(default_factory=dict)


async def run_chaos(config: ChaosConfig, root: Path) -> ChaosResult:
    """Start a cluster under ``root``, run the storm and the drain, and check the history."""
    queue = "chaos-" + uuid.uuid4().hex[:8]
    ledger = Ledger(root / "ledger.jsonl")
    kills: Counter[str] = Counter()
    redis_kills: list[float] = []
    rng = random.Random(config.seed)
    with ChaosCluster(root, queue, config.fsync) as cluster:
        await cluster.start()
        until = time.monotonic() + config.storm_s
        await asyncio.gather(
            produce(cluster.url, cluster.admin_key, ledger, queue, target=config.tasks,
                    seconds=config.storm_s * 0.9, seed=config.seed),
            _worker_storm(cluster, random.Random(rng.random()), until, kills),
            _service_storm(cluster, random.Random(rng.random()), until, config.service_every_s,
                           kills, redis_kills),
        )  # fmt: skip
        storm_end = time.monotonic()
        records = await _drain(cluster.redis.url, queue, config.drain_s)
        drained = time.monotonic()
        exit_codes = cluster.graceful_exit_codes()
    verdict = check(ledger.entries, records, Executions.read(cluster.exec_dir), redis_kills)
    process_kills = sum(n for name, n in kills.items() if name != "redis")
    line = summary_line(
        verdict, kills=process_kills, redis_restarts=kills["redis"], fsync=config.fsync
    )
    bound = duplicate_bound(kills, cluster.workers_wanted)
    details: dict[str, object] = {
        "duplicate_bound": bound,
        "storm_s": round(storm_end - until + config.storm_s, 1),
        "drain_s": round(drained - storm_end, 1),
        "kills": dict(kills),
        "responses": dict(ledger.responses),
        "unacknowledged_requests": ledger.unacknowledged,
        "unrecorded_tasks": len(set(records) - set(ledger.entries)),
        "refusals": ledger.refusals[:20],
        "loss_windows_s": sorted(round(w, 3) for w in verdict.loss_windows),
        "sigterm_exit_codes": dict(Counter(str(c) for c in exit_codes)),
        "problems": verdict.problems[:50],
    }
    (root / "report.json").write_text(json.dumps({"summary": line, **details}, indent=2))
    return ChaosResult(line, verdict, kills, ledger, bound, details)


def duplicate_bound(kills: Counter[str], workers: int) -> int:
    """Most duplicate executions the kills of a run can cause.

    A killed worker (SIGKILL, or SIGTERM past its grace period) cuts short at most the
    ``CONCURRENCY`` runs it holds, or loses their outcomes: each reruns once. A Redis restart
    can let every running task's lease lapse (heartbeats fail meanwhile): each of them may
    rerun. Killing the api, the gateway or the scheduler reruns nothing.
    """
    worker_kills = kills["worker_sigkill"] + kills["worker_sigterm"]
    return CONCURRENCY * (worker_kills + workers * kills["redis"])


async def _worker_storm(
    cluster: ChaosCluster, rng: random.Random, until: float, kills: Counter[str]
) -> None:
    while True:
        if not await _pause(rng.uniform(1.0, 3.0), until):
            return
        # A worker still starting up has no SIGTERM handler yet (the signal would kill it
        # outright): graceful restarts pick among the ready ones, if any.
        ready = cluster.ready_workers() if rng.random() < 0.25 else []
        graceful = bool(ready)
        index = rng.choice(ready) if ready else rng.randrange(len(cluster.workers))
        cluster.kill_worker(index, graceful)
        kills["worker_sigterm" if graceful else "worker_sigkill"] += 1


async def _service_storm(
    cluster: ChaosCluster,
    rng: random.Random,
    until: float,
    every_s: float,
    kills: Counter[str],
    redis_kills: list[float],
) -> None:
    for victim in itertools.cycle(("api", "gateway", "redis", "scheduler")):
        if not await _pause(rng.uniform(0.5, 1.5) * every_s, until):
            return
        if victim == "redis":
            redis_kills.append(time.monotonic())
            await cluster.restart_redis()
        else:
            cluster.kill_service(victim)  # type: ignore[arg-type]
        kills[victim] += 1


async def _pause(seconds: float, until: float) -> bool:
    """Sleep ``seconds``, or until ``until`` if that is sooner; whether the storm goes on."""
    left = until - time.monotonic()
    await asyncio.sleep(max(0.0, min(seconds, left)))
    return seconds < left


async def _drain(url: str, queue: str, timeout_s: float) -> dict[str, FinalRecord]:
    """Wait until every task of the queue is terminal (or ``timeout_s``); the final records."""
    deadline = time.monotonic() + timeout_s
    client = Redis.from_url(url, decode_responses=True)
    try:
        while True:
            records = await _read_records(client, queue)
            # Orphans (stored, never acknowledged) are in ``records`` too: they must end as well.
            pending = any(r.state not in TERMINAL for r in records.values())
            if not pending or time.monotonic() > deadline:
                return records
            await asyncio.sleep(1.0)
    finally:
        await client.aclose()


async def _read_records(client: Redis, queue: str) -> dict[str, FinalRecord]:
    """Every task record of ``queue``: its state and whether it is in the DLQ."""
    keys = QueueKeys(queue)
    prefix = keys.task("")
    names = [name async for name in client.scan_iter(match=f"{prefix}*", count=1000)]
    dead = set(await client.zrange(keys.dead, 0, -1))
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(name, "state")
        states = await pipe.execute()
    return {
        name[len(prefix) :]: FinalRecord(str(state), name[len(prefix) :] in dead)
        for name, state in zip(names, states, strict=True)
        if state is not None
    }
