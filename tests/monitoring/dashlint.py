"""./bin/dashlint, the Grafana dashboard linter of tools/dashlint, for the monitoring tests.

Built by `make -f mk/dashlint.mk dashlint` (a no-op when the binary is newer than its sources),
or with a plain `go build` where there is no make. A missing Go fails the test that needs it:
the lint is part of `make test`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.monitoring.tooling import BIN, REPO

SOURCE = REPO / "tools" / "dashlint"
MAKEFILE = REPO / "mk" / "dashlint.mk"
BUILD_TIMEOUT_S = 900  # a cold build compiles the Grafana SDK and Prometheus' parser


@cache
def dashlint() -> Path:
    """The path of a current ./bin/dashlint, building it first when needed."""
    path = BIN / "dashlint"
    if shutil.which("go") is None:
        pytest.fail(
            "bin/dashlint needs Go to build: install Go (https://go.dev/doc/install), then "
            "`make dashlint`",
            pytrace=False,
        )
    make = shutil.which("make")
    if make:
        command = [
            make,
            "--no-print-directory",
            "-f",
            str(MAKEFILE),
            "dashlint",
            f"DASHLINT={path}",
        ]
        cwd = REPO
    else:
        command = ["go", "build", "-mod=readonly", "-trimpath", "-o", str(path), "."]
        cwd = SOURCE
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
    )
    if result.returncode != 0 or not os.access(path, os.X_OK):
        pytest.fail(
            f"building bin/dashlint failed ({' '.join(command)}):\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    return path


def run_dashlint(*files: Path) -> subprocess.CompletedProcess[str]:
    """bin/dashlint on ``files``: one finding per stdout line, exit 1 on any error."""
    return subprocess.run(
        [str(dashlint()), *map(str, files)], capture_output=True, text=True, timeout=120
    )
