"""The history check of a chaos run: ledger, executions and final records compared.

Definitions (docs/failure-modes.md, "How we test this", states them for readers):

- *lost*: accepted (2xx received) but no record of it exists after the drain.
- *stuck*: a task (accepted or not) whose record is in a non-terminal state after the drain.
- *duplicate executions*: handler runs beyond those the task's outcome needed. A task that
  succeeded needed its failed runs (each raised on purpose) plus one; a dead task needed its
  failed runs. Every other run, one cut short by a kill or one repeated because its outcome
  was lost, is a duplicate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.producer import Entry, Kind

TERMINAL = frozenset({"succeeded", "dead", "cancelled"})
MUST_SUCCEED: frozenset[Kind] = frozenset({"quick", "slow", "flaky", "delayed"})


@dataclass(frozen=True)
class FinalRecord:
    """What Redis holds for one task after the drain."""

    state: str
    in_dlq: bool


@dataclass
class Executions:
    """Handler runs per task, read from the workers' execution logs."""

    started: Counter[str] = field(default_factory=Counter)
    raised: Counter[str] = field(default_factory=Counter)
    returned: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, directory: Path) -> Executions:
        return cls.parse(line for path in sorted(directory.glob("exec-*.log"))
                         for line in path.read_text().splitlines())  # fmt: skip

    @classmethod
    def parse(cls, lines: Iterable[str]) -> Executions:
        runs = cls()
        counters = {"start": runs.started, "raise": runs.raised, "ok": runs.returned}
        for line in lines:
            parts = line.split()
            if len(parts) == 4 and parts[0] in counters:
                counters[parts[0]][parts[1]] += 1
        return runs

    def duplicates(self, task_id: str, state: str | None) -> int:
        needed = self.raised[task_id] + (1 if state == "succeeded" else 0)
        return max(0, self.started[task_id] - needed)


@dataclass
class Verdict:
    """Counts for the summary line, and every broken promise found."""

    counts: Counter[str]
    problems: list[str]
    #: Seconds between each lost task's 2xx and the Redis kill that followed it.
    loss_windows: list[float]


def check(
    ledger: Mapping[str, Entry],
    records: Mapping[str, FinalRecord],
    runs: Executions,
    redis_kills: list[float],
) -> Verdict:
    """Compare what was accepted, what ran and how each task ended.

    Args:
        ledger: accepted tasks by id.
        records: the final record of every task of the queue (accepted or not) by id.
        runs: the handler executions.
        redis_kills: ``time.monotonic()`` of each Redis kill.
    """
    counts: Counter[str] = Counter(accepted=len(ledger))
    problems: list[str] = []
    windows: list[float] = []
    for task_id, entry in ledger.items():
        record = records.get(task_id)
        if record is None:
            counts["lost"] += 1
            windows += [k - entry.acked_at for k in redis_kills if k >= entry.acked_at][:1]
            continue
        counts[record.state] += 1
        problems += _broken_promises(task_id, entry, record, runs)
    for task_id, record in records.items():
        if record.state not in TERMINAL:
            counts["stuck"] += 1
            problems.append(f"{task_id} is stuck in {record.state}")
        counts["duplicate_executions"] += runs.duplicates(task_id, record.state)
    return Verdict(counts, problems, windows)


def _broken_promises(
    task_id: str, entry: Entry, record: FinalRecord, runs: Executions
) -> list[str]:
    problems: list[str] = []
    if entry.kind == "fail" and not (record.state == "dead" and record.in_dlq):
        problems.append(f"always-failing {task_id} ended {record.state}, not in the DLQ")
    if entry.kind in MUST_SUCCEED and record.state == "dead":
        problems.append(f"{entry.kind} {task_id} is in the DLQ but should have succeeded")
    if entry.kind == "cancel" and entry.cancel_acked and record.state != "cancelled":
        problems.append(f"{task_id} was cancelled (2xx) but ended {record.state}")
    if record.state == "cancelled" and entry.kind != "cancel":
        problems.append(f"{entry.kind} {task_id} ended cancelled; nobody cancelled it")
    if record.state == "succeeded" and not runs.returned[task_id]:
        problems.append(f"{task_id} succeeded but its handler never returned")
    return problems


def summary_line(verdict: Verdict, *, kills: int, redis_restarts: int, fsync: str) -> str:
    """The one line a run prints."""
    c = verdict.counts
    return (
        f"chaos: accepted={c['accepted']} succeeded={c['succeeded']} dead={c['dead']} "
        f"cancelled={c['cancelled']} lost={c['lost']} stuck={c['stuck']} "
        f"duplicate_executions={c['duplicate_executions']} kills={kills} "
        f"redis_restarts={redis_restarts} fsync={fsync}"
    )
