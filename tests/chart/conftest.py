"""Chart tests: the pinned tools are built (or found up to date) once, before any test runs.

Building happens in ``pytest_collection_finish``, outside every test's timeout: a first
``go install`` of helm takes minutes on a fresh machine. ``make -f mk/chart.mk`` skips what is
already there, so later runs spend well under a second here.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.chart.helm import REPO

#: What the chart tests need: helm (every test), kubeconform and its offline schemas.
MAKE_TARGETS = ("helm", "kubeconform", "chart-schemas")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install the pinned tools when chart tests were collected."""
    chart_dir = REPO / "tests" / "chart"
    if not any(chart_dir in item.path.parents for item in session.items):
        return
    proc = subprocess.run(
        ["make", "--no-print-directory", "-f", "mk/chart.mk", *MAKE_TARGETS],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise pytest.UsageError(
            "could not install the chart tools (make -f mk/chart.mk "
            f"{' '.join(MAKE_TARGETS)}); Go is required:\n{proc.stdout}\n{proc.stderr}"
        )
