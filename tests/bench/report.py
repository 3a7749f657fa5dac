"""Figures, their targets, the one table ``make bench`` prints, and ``bench-results.json``.

Every figure keeps the value of every run; the table shows the median. The JSON holds every
figure (shown in the table or not), every run, the medians, per-run details (wrk output,
commands per task by name, ...) and what the run ran on, so two commits can be compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.common import REPO
from tests.support.redis_server import find_redis_server


@dataclass(frozen=True, slots=True)
class Target:
    """``value op target``, with op ">=" (more is better) or "<=" (less is better)."""

    op: str
    value: float

    def ratio(self, value: float) -> float:
        """How far the value is along the target: 1.0 or more means it is met."""
        if self.op == ">=":
            return value / self.value
        return self.value / value if value > 0 else float("inf")

    def __str__(self) -> str:
        return f"{self.op} {_fmt(self.value)}"


@dataclass
class Figure:
    """One measured quantity over the runs."""

    label: str
    unit: str
    target: Target | None = None
    show: bool = True
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


@dataclass
class Results:
    """Every figure by key, in the order first recorded, and raw details."""

    figures: dict[str, Figure] = field(default_factory=dict)
    details: dict[str, list[Any]] = field(default_factory=dict)

    def add(
        self,
        key: str,
        value: float,
        label: str,
        unit: str,
        target: Target | None = None,
        *,
        show: bool = True,
    ) -> None:
        """Record one run's value of figure ``key`` (created on its first value)."""
        figure = self.figures.setdefault(key, Figure(label, unit, target, show))
        figure.runs.append(value)

    def detail(self, key: str, value: Any) -> None:
        """Keep a raw per-run detail for the JSON."""
        self.details.setdefault(key, []).append(value)

    def copy_as(self, key: str, source: str, label: str, target: Target | None = None) -> None:
        """A shown figure with the runs of ``source`` (e.g. the best of a sweep)."""
        self.figures[key] = Figure(label, self.figures[source].unit, target, True)
        self.figures[key].runs = list(self.figures[source].runs)

    def failures(self) -> list[str]:
        """Labels of the figures that miss their target (by median)."""
        return [
            f.label
            for f in self.figures.values()
            if f.target is not None and f.runs and f.target.ratio(f.median) < 1
        ]


def _fmt(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _rank(key: str, order: Sequence[str]) -> int:
    return next((i for i, prefix in enumerate(order) if key.startswith(prefix)), len(order))


def table(results: Results, order: Sequence[str] = ()) -> str:
    """The one table: figure, median (runs), target, ratio to it and verdict.

    Shown figures are grouped by the first prefix in ``order`` their key starts with.
    """
    rows = [("figure", "median", "unit", "runs", "target", "ratio", "verdict")]
    keys = sorted(results.figures, key=lambda k: _rank(k, order))
    for figure in (results.figures[k] for k in keys):
        if not figure.show or not figure.runs:
            continue
        target, ratio, verdict = "", "", ""
        if figure.target is not None:
            r = figure.target.ratio(figure.median)
            target, ratio, verdict = str(figure.target), f"{r:.2f}", "ok" if r >= 1 else "MISS"
        spread = f"{len(figure.runs)}" if len(figure.runs) == 1 else (
            f"{len(figure.runs)} ({_fmt(min(figure.runs))}-{_fmt(max(figure.runs))})"
        )  # fmt: skip
        rows.append(
            (figure.label, _fmt(figure.median), figure.unit, spread, target, ratio, verdict)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i in (0, 2, 3) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=REPO).stdout.strip()
    except OSError:
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def code_state() -> str:
    """A digest of services/ as committed (its tree, so a docs-only commit changes nothing) and
    its uncommitted changes: what runs."""
    head = _run(["git", "rev-parse", "HEAD:services"])
    diff = _run(["git", "diff", "HEAD", "--", "services"])
    return hashlib.sha256(f"{head}\n{diff}".encode()).hexdigest()[:16]


def metadata(quick: bool, runs: int) -> dict[str, Any]:
    """What the figures were measured on."""
    redis = find_redis_server()
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "git_commit": _run(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(dirty),
        "code_state_start": code_state(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "redis_server": _run([redis, "--version"]) if redis else "",
        "mode": "quick" if quick else "full",
        "runs": runs,
        "loadavg_start": load_average(),
    }


def write_json(path: Path, results: Results, meta: dict[str, Any]) -> None:
    """Every figure with its runs, median and target, the details and the metadata."""
    figures = {
        key: {
            "label": f.label,
            "unit": f.unit,
            "runs": f.runs,
            "median": f.median if f.runs else None,
            "target": None if f.target is None else str(f.target),
            "met": None if f.target is None or not f.runs else f.target.ratio(f.median) >= 1,
            "shown": f.show,
        }
        for key, f in results.figures.items()
    }
    body = {"meta": meta, "figures": figures, "details": results.details}
    path.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
