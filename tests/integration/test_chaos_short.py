"""The short chaos run that ``make test`` keeps (about 2 minutes), and the checker's own tests.

Same harness as ``make chaos`` (tests/chaos/run.py) at a smaller scale: 1,500 tasks through the
gateway in 55 s of kills of workers, api, gateway, Redis (``appendfsync always``) and scheduler.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.checker import Executions, FinalRecord, check, summary_line
from tests.chaos.producer import Entry
from tests.chaos.run import ChaosConfig, run_chaos


@pytest.mark.timeout(300)
async def test_short_chaos_run_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ChaosConfig(fsync="always", tasks=1500, storm_s=55, service_every_s=3.5, drain_s=90)
    result = await run_chaos(config, tmp_path)
    with capsys.disabled():
        print(f"\n{result.line}")
    counts = result.verdict.counts
    assert counts["accepted"] >= 1000, result.details
    assert (counts["lost"], counts["stuck"]) == (0, 0), result.details
    assert not result.verdict.problems, result.details
    assert not result.ledger.refusals, result.details
    assert counts["duplicate_executions"] <= result.duplicate_bound, result.details
    assert counts["succeeded"] > 0 and counts["dead"] > 0, result.details
    assert result.kills["worker_sigkill"] > 0 and result.kills["redis"] > 0, result.details
    assert result.kills["api"] > 0 and result.kills["gateway"] > 0, result.details


def _entry(task_id: str, kind: str, acked_at: float = 0.0, cancel: bool = False) -> Entry:
    return Entry(task_id, kind, keyed=False, acked_at=acked_at, cancel_acked=cancel)  # type: ignore[arg-type]


def test_checker_counts_lost_stuck_and_duplicates_and_ignores_unacknowledged_tasks() -> None:
    ledger = {
        "a": _entry("a", "quick"),
        "b": _entry("b", "flaky"),
        "c": _entry("c", "quick", acked_at=10.0),
        "d": _entry("d", "fail"),
    }
    records = {
        "a": FinalRecord("succeeded", False),
        "b": FinalRecord("succeeded", False),
        "d": FinalRecord("dead", True),
        "orphan": FinalRecord("succeeded", False),  # stored, but its 2xx never arrived
        "late": FinalRecord("running", False),
    }
    runs = Executions.parse(
        [
            "start a 1 7", "ok a 1 7", "start a 2 8", "ok a 2 8",  # outcome lost: ran twice
            "start b 1 7", "raise b 1 7", "start b 2 7", "start b 3 8", "ok b 3 8",
            "start d 1 7", "raise d 1 7", "start d 2 7", "raise d 2 7",
            "start orphan 1 7", "ok orphan 1 7", "garbage",
        ]
    )  # fmt: skip
    verdict = check(ledger, records, runs, redis_kills=[5.0, 12.5])
    line = summary_line(verdict, kills=4, redis_restarts=2, fsync="everysec")
    assert line == (
        "chaos: accepted=4 succeeded=2 dead=1 cancelled=0 lost=1 stuck=1 "
        "duplicate_executions=2 kills=4 redis_restarts=2 fsync=everysec"
    )
    assert verdict.loss_windows == [2.5]
    assert verdict.problems == ["late is stuck in running"]


def test_checker_flags_each_broken_promise() -> None:
    ledger = {
        "f": _entry("f", "fail"),
        "q": _entry("q", "quick"),
        "x": _entry("x", "cancel", cancel=True),
        "s": _entry("s", "slow"),
        "n": _entry("n", "quick"),
    }
    records = {
        "f": FinalRecord("succeeded", False),
        "q": FinalRecord("dead", True),
        "x": FinalRecord("succeeded", False),
        "s": FinalRecord("cancelled", False),
        "n": FinalRecord("succeeded", False),
    }
    runs = Executions.parse(["start f 1 1", "ok f 1 1", "start x 1 1", "ok x 1 1"])
    problems = check(ledger, records, runs, redis_kills=[]).problems
    assert problems == [
        "always-failing f ended succeeded, not in the DLQ",
        "quick q is in the DLQ but should have succeeded",
        "x was cancelled (2xx) but ended succeeded",
        "slow s ended cancelled; nobody cancelled it",
        "n succeeded but its handler never returned",
    ]
