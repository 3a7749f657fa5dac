"""``make bench``: every benchmark, one table, and every figure in ``bench-results.json``.

Usage: ``python -m tests.bench [--quick] [--runs N] [--out bench-results.json]
[--only SECTION ...]``. Sections (each module's docstring says what it measures and how):
``drain`` (:mod:`tests.bench.drain`, with the Redis and worker costs per task), ``enqueue``
(:mod:`tests.bench.enqueue`), ``pickup`` (:mod:`tests.bench.pickup`), ``memory``
(:mod:`tests.bench.redis_costs`), ``ceiling`` (:mod:`tests.bench.ceiling`) and ``http``
(:mod:`tests.bench.gateway_enqueue`). The table shows the median of the runs; a full run takes
about ten minutes, ``--quick`` (one run, smaller sizes) under two.

Exit status 1 when a measurement could not be taken (a worker exited non-zero, a drain left
tasks behind, wrk saw a non-2xx, ...); a figure missing its target is reported, not failed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tests.bench import ceiling, drain, enqueue, gateway_enqueue, pickup
from tests.bench.common import BenchError
from tests.bench.redis_costs import PAYLOAD_BYTES, memory_per_task
from tests.bench.report import (
    Results,
    Target,
    code_state,
    load_average,
    metadata,
    table,
    write_json,
)
from tests.support.redis_server import RedisServer

SECTIONS = ("drain", "enqueue", "pickup", "memory", "ceiling", "http")
#: Table order: figures grouped by what they measure.
ORDER = ("drain.", "cost.", "http.", "enqueue.", "pickup.", "memory.", "ceiling.")


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each section does per run."""

    runs: int
    drain_tasks: int
    concurrencies: tuple[int, ...]
    wrk_s: float
    connections: tuple[int, ...]
    single: int
    batch: int
    pickup_s: float
    memory_tasks: int
    ceiling_requests: int


FULL = Sizes(3, 20_000, (50, 200, 1000), 10, (1, 16, 64), 5_000, 50_000, 15, 10_000, 100_000)
QUICK = Sizes(1, 10_000, (200,), 3, (1, 16, 64), 2_000, 20_000, 5, 5_000, 20_000)


def _progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _redis_sections(results: Results, sizes: Sizes, only: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(dir=Path(tmp)) as server:
        url = server.url
        for run in range(1, sizes.runs + 1):
            if "drain" in only:
                _progress(f"run {run}: drain ({sizes.drain_tasks} tasks per drain)")
                drain.run_section(results, url, sizes.drain_tasks, list(sizes.concurrencies))
            if "enqueue" in only:
                _progress(f"run {run}: Python enqueue")
                enqueue.run_section(results, url, sizes.single, sizes.batch)
            if "pickup" in only:
                _progress(f"run {run}: pickup latency ({sizes.pickup_s:g} s)")
                pickup.run_section(results, url, sizes.pickup_s)
            if "memory" in only:
                _progress(f"run {run}: Redis memory per queued task")
                per_task, by_key = asyncio.run(memory_per_task(url, sizes.memory_tasks))
                results.detail("memory.bytes_per_task_by_key", by_key)
                results.add("memory.per_task", per_task,
                            f"Redis memory per queued {PAYLOAD_BYTES}-byte task", "bytes",
                            Target("<=", 400))  # fmt: skip
            if "ceiling" in only:
                _progress(f"run {run}: Redis ceiling (redis-benchmark)")
                ceiling.run_section(results, url, server.port, sizes.ceiling_requests)


def run(results: Results, sizes: Sizes, only: set[str]) -> None:
    """Every selected section, ``sizes.runs`` times."""
    _redis_sections(results, sizes, only)
    if "drain" in only:
        drain.summarize(results)
    if "http" in only:
        _progress(f"HTTP enqueue: {sizes.runs} x {len(sizes.connections)} x 2 wrk runs")
        gateway_enqueue.run_section(results, sizes.runs, list(sizes.connections), sizes.wrk_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run, smaller sizes")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be at least 1")
        sizes = replace(sizes, runs=args.runs)
    results = Results()
    meta = metadata(args.quick, sizes.runs)
    status = 0
    try:
        run(results, sizes, set(args.only))
    except BenchError as exc:
        print(f"ERROR [bench]: {exc}", file=sys.stderr)
        meta["error"] = str(exc)
        status = 1
    meta["loadavg_end"] = load_average()
    meta["code_state_end"] = code_state()
    write_json(args.out, results, meta)
    print(f"\nTaskForge bench ({meta['mode']}, {sizes.runs} run(s); median shown) "
          f"on {meta['nproc']} x {meta['cpu_model']}, commit {meta['git_commit'][:12]}"
          f"{' (dirty)' if meta['git_dirty'] else ''}; load average {meta['loadavg_start']} "
          f"at start, {meta['loadavg_end']} at end\n")  # fmt: skip
    print(table(results, ORDER))
    if meta["code_state_start"] != meta["code_state_end"]:
        print("\nWARNING: the code under services/ changed during the run (a commit or an edit):"
              " the figures mix versions")  # fmt: skip
    missed = results.failures()
    print(f"\n{len(missed)} figure(s) miss their target; all figures: {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
