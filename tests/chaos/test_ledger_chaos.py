"""The full chaos run, once per ``appendfsync`` mode (``make chaos``, about 4 minutes each).

Producers enqueue at least 10,000 tasks through the gateway while workers are SIGKILLed every
1 to 3 s (some SIGTERMed instead) and the api, the gateway, Redis and the scheduler are killed
in turn; the ledger check then prints one summary line per mode (see tests/chaos/run.py). The
short variant that ``make test`` runs is tests/integration/test_chaos_short.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.chaos.cluster import FsyncMode
from tests.chaos.run import ChaosConfig, ChaosResult, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

FULL_TASKS = 10_500
FULL_STORM_S = 210.0


def _config(fsync: FsyncMode) -> ChaosConfig:
    return ChaosConfig(fsync=fsync, tasks=FULL_TASKS, storm_s=FULL_STORM_S, service_every_s=6.5)


#: When set, each full run copies its report.json there as chaos-<mode>.json (the tmp_path of a
#: passing test is removed).
REPORT_DIR_ENV = "CHAOS_REPORT_DIR"


def _show(result: ChaosResult, capsys: pytest.CaptureFixture[str], root: Path) -> None:
    with capsys.disabled():
        print(f"\n{result.line}")
    if target := os.environ.get(REPORT_DIR_ENV):
        Path(target).mkdir(parents=True, exist_ok=True)
        fsync = result.line.rsplit("=", 1)[1]
        shutil.copyfile(root / "report.json", Path(target) / f"chaos-{fsync}.json")


def _assert_scale(result: ChaosResult) -> None:
    kills = result.kills
    assert len(result.ledger.entries) >= 10_000, result.details
    assert kills["worker_sigkill"] >= 50, result.details
    assert kills["redis"] >= 3, result.details
    assert kills["api"] >= 5 and kills["gateway"] >= 5, result.details


def _assert_history(result: ChaosResult) -> None:
    counts = result.verdict.counts
    assert counts["stuck"] == 0, result.details
    assert not result.verdict.problems, result.details
    assert not result.ledger.refusals, result.details
    assert counts["duplicate_executions"] <= result.duplicate_bound, result.details


async def test_full_chaos_with_appendfsync_always_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run_chaos(_config("always"), tmp_path)
    _show(result, capsys, tmp_path)
    _assert_scale(result)
    _assert_history(result)
    assert result.verdict.counts["lost"] == 0, result.details


async def test_full_chaos_with_appendfsync_everysec_reports_its_loss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """everysec may lose acknowledged writes: the run reports them, and fails on the rest.

    The seconds between each lost task's 2xx and the Redis kill after it are in the run's
    ``report.json`` (``loss_windows_s``).
    """
    result = await run_chaos(_config("everysec"), tmp_path)
    _show(result, capsys, tmp_path)
    _assert_scale(result)
    _assert_history(result)
