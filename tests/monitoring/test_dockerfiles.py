"""The four service Dockerfiles: hadolint-clean and built the way docs/conventions.md says
(#ci-and-images and #container-images: pinned slim base, uv copied from a pinned image, two
`uv sync --frozen` phases, only the venv in a runtime stage that runs as a numeric non-root user
with the service's console script), and a .dockerignore that keeps local state out without
hiding what the builds copy.

Image builds themselves need a Docker daemon: they run in CI (.github/workflows/ci.yml)."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.monitoring.tooling import REPO, hadolint

pytestmark = pytest.mark.timeout(600)  # hadolint may be fetched through uv

SERVICES = ("gateway", "api", "worker", "scheduler")
PORTS = {
    "gateway": {"8080", "9100"},
    "api": {"8000", "9101"},
    "worker": {"9102"},
    "scheduler": {"9103"},
}
PYTHON_BASE = re.compile(r"python:3\.11\.\d+-slim-bookworm")
UV_IMAGE = re.compile(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+")
OCI_LABELS = {"title", "description", "source", "licenses", "version"}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(path: Path) -> list[Stage]:
    """Stages of a Dockerfile as (KEYWORD, arguments) lists, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = " ".join(args.split())
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def dockerfile(service: str) -> Path:
    return REPO / "services" / service / "Dockerfile"


def workspace_members() -> list[str]:
    root = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return list(root["tool"]["uv"]["workspace"]["members"])


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_is_clean(service: str) -> None:
    result = subprocess.run(
        [*hadolint(), "--no-color", str(dockerfile(service))],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_stages_use_one_pinned_slim_base_and_a_pinned_uv(service: str) -> None:
    stages = parse(dockerfile(service))
    assert len(stages) == 2, "builder + runtime"
    builder, runtime = stages
    assert PYTHON_BASE.fullmatch(builder.base), builder.base
    assert runtime.base == builder.base, "the venv's interpreter path must match the builder's"
    uv_copies = [c for c in builder.all("COPY") if "astral-sh/uv" in c]
    assert len(uv_copies) == 1
    image = re.search(r"--from=(\S+)", uv_copies[0])
    assert image and UV_IMAGE.fullmatch(image.group(1)), uv_copies[0]


def test_all_dockerfiles_pin_the_same_versions() -> None:
    bases = {parse(dockerfile(s))[0].base for s in SERVICES}
    uvs = {m for s in SERVICES for m in UV_IMAGE.findall(dockerfile(s).read_text(encoding="utf-8"))}
    assert len(bases) == 1 and len(uvs) == 1, (bases, uvs)


@pytest.mark.parametrize("service", SERVICES)
def test_builder_syncs_dependencies_then_sources_from_the_lock(service: str) -> None:
    builder = parse(dockerfile(service))[0]
    steps = [(kw, args) for kw, args in builder.instructions if kw in ("COPY", "RUN")]
    syncs = [i for i, (kw, args) in enumerate(steps) if kw == "RUN" and "uv sync" in args]
    assert len(syncs) == 2, "two uv sync phases"
    first, second = (steps[i][1] for i in syncs)
    package = f"--package taskforge-{service}"
    for sync in (first, second):
        assert "--frozen" in sync and "--no-dev" in sync and package in sync, sync
        assert "--mount=type=cache,target=/root/.cache/uv" in sync, sync
    assert "--no-install-workspace" in first
    assert "--no-editable" in second
    # Phase 1 sees only the lock and every pyproject.toml of the (virtual) workspace.
    allowed = {"pyproject.toml", "uv.lock"} | {f"{m}/pyproject.toml" for m in workspace_members()}
    before = {
        source
        for kw, args in steps[: syncs[0]]
        if kw == "COPY" and "--from" not in args
        for source in args.split()[:-1]
    }
    assert before == allowed, f"phase 1 must copy exactly {sorted(allowed)}"
    # Phase 2 adds this service's package and the core package, which exist on disk.
    between = [args.split() for kw, args in steps[syncs[0] : syncs[1]] if kw == "COPY"]
    sources = {parts[0] for parts in between}
    assert sources == {"services/core/taskforge", f"services/{service}/taskforge_{service}"}
    for source in sources:
        assert (REPO / source / "__init__.py").is_file(), source


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_holds_only_the_venv_and_runs_as_non_root(service: str) -> None:
    runtime = parse(dockerfile(service))[1]
    copies = runtime.all("COPY")
    assert copies == ["--from=builder /app/.venv /app/.venv"], copies
    users = runtime.all("USER")
    assert users, "no USER in the runtime stage"
    user = users[-1]
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user} must be numeric uid:gid"
    assert all(int(part) != 0 for part in user.split(":")), "USER must not be root"
    kinds = [kw for kw, _ in runtime.instructions]
    last_user = len(kinds) - 1 - kinds[::-1].index("USER")
    assert all(kw not in ("RUN", "COPY") for kw in kinds[last_user:]), "RUN/COPY after USER"
    env = " ".join(runtime.all("ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "PATH=/app/.venv/bin:$PATH"):
        assert setting in env, setting
    for instruction in runtime.all("RUN"):
        assert not re.search(r"\b(apt-get|pip|uv|gcc)\b", instruction), instruction


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_is_the_services_console_script(service: str) -> None:
    runtime = parse(dockerfile(service))[1]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    command = json.loads(entrypoint)  # exec form: the service is PID 1 and gets SIGTERM
    project = tomllib.loads(
        (REPO / "services" / service / "pyproject.toml").read_text(encoding="utf-8")
    )
    scripts = project["project"]["scripts"]
    assert command == [f"taskforge-{service}"]
    assert command[0] in scripts, scripts
    assert scripts[command[0]] == f"taskforge_{service}.main:main"


@pytest.mark.parametrize("service", SERVICES)
def test_ports_and_oci_labels(service: str) -> None:
    runtime = parse(dockerfile(service))[1]
    exposed = {p for args in runtime.all("EXPOSE") for p in args.split()}
    assert exposed == PORTS[service]
    labels = " ".join(runtime.all("LABEL"))
    found = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", labels))
    assert found >= OCI_LABELS, OCI_LABELS - found
    assert f'org.opencontainers.image.title="taskforge-{service}"' in labels
    args = {a.split("=")[0] for a in runtime.all("ARG")}
    assert {"VERSION", "SOURCE", "LICENSES"} <= args


# ---------------------------------------------------------------------------- .dockerignore


def ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, near enough: a pattern matches the path or one of its parent folders;
    `**` spans folders; a later `!pattern` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        hit = any(
            fnmatch.fnmatchcase(p, pat)
            or (pat.startswith("**/") and fnmatch.fnmatchcase(p, pat[3:]))
            or (pat.startswith("**/") and fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pat[3:]))
            for p in prefixes
        )
        if hit:
            result = not negate
    return result


def copied_files() -> set[str]:
    """Every file the four Dockerfiles COPY from the build context."""
    files: set[str] = set()
    for service in SERVICES:
        for stage in parse(dockerfile(service)):
            for args in stage.all("COPY"):
                parts = [p for p in args.split() if not p.startswith("--")]
                if "--from=" in args:
                    continue
                for source in parts[:-1]:
                    path = REPO / source
                    if path.is_dir():
                        files.update(
                            str(f.relative_to(REPO)) for f in path.rglob("*")
                            if f.is_file() and "__pycache__" not in f.parts
                        )  # fmt: skip
                    else:
                        files.add(source)
    return files


def test_dockerignore_keeps_everything_the_builds_copy() -> None:
    patterns = ignore_patterns()
    hidden = sorted(f for f in copied_files() if ignored(f, patterns))
    assert hidden == []
    assert any(f.endswith(".lua") for f in copied_files()), "Lua scripts must reach the image"


NOT_IN_CONTEXT = [
    ".git/config",
    ".venv/bin/python",
    "tests/conftest.py",
    "charts/taskforge/Chart.yaml",
    ".taskforge-dev/dump.rdb",
    "bin/helm",
    "README.md",
    "docs/design-decisions.md",
    "services/core/taskforge/__pycache__/x.pyc",
    ".github/workflows/ci.yml",
    "k8s/values-kind.yaml",
]


@pytest.mark.parametrize("path", NOT_IN_CONTEXT)
def test_dockerignore_keeps_local_state_and_non_image_files_out(path: str) -> None:
    assert ignored(path, ignore_patterns()), path
