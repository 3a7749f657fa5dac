"""GitHub workflows: actionlint-clean, every action pinned to an exact release (or a commented
40-hex SHA), least-privilege permissions, a timeout on every job, checkout without persisted
credentials, and the kind e2e job doing what it promises."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.tooling import REPO, go_tool, shellcheck

pytestmark = pytest.mark.timeout(900)  # may build ./bin/actionlint

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
PINNED = re.compile(
    r"""^\s*(?:-\s*)?uses:\s*['"]?(?P<ref>[^@\s'"]+)@(?P<version>[^\s'"#]+)['"]?\s*(?P<comment>\#.*)?$"""
)
EXACT = re.compile(r"v\d+\.\d+\.\d+")
SHA = re.compile(r"[0-9a-f]{40}")
SHA_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\b")


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def run_text(workflow: dict[Any, Any]) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow))


def test_there_are_workflows() -> None:
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "e2e-kind.yml"} <= names


def test_actionlint_is_clean() -> None:
    command = [str(go_tool("actionlint")), "-no-color"]
    checker = shellcheck()
    command.append(f"-shellcheck={checker or ''}")
    result = subprocess.run(
        [*command, *map(str, WORKFLOWS)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_an_exact_release(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not re.match(r"^\s*(?:-\s*)?uses:", line):
            continue
        match = PINNED.match(line)
        assert match, f"{path.name}:{number}: unpinned `uses:` {line.strip()}"
        if match["ref"].startswith("./"):
            continue
        version = match["version"]
        if SHA.fullmatch(version):
            assert match["comment"] and SHA_COMMENT.search(match["comment"]), (
                f"{path.name}:{number}: a SHA pin needs a `# vX.Y.Z` comment"
            )
        else:
            assert EXACT.fullmatch(version), f"{path.name}:{number}: moving ref @{version}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_timeouts(path: Path) -> None:
    workflow = load(path)
    permissions = workflow.get("permissions")
    assert permissions is not None, "top-level permissions must be set"
    assert permissions == {} or permissions == {"contents": "read"}, permissions
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout-minutes"
        assert job["timeout-minutes"] <= 90, name
        job_permissions = job.get("permissions", {})
        assert all(v in ("read", "none") for v in job_permissions.values()), (name, job_permissions)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_does_not_persist_credentials(path: Path) -> None:
    checkouts = [s for s in steps(load(path)) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step.get("with", {}).get("persist-credentials") is False


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_tools_and_images_are_pinned(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r":latest\b", text)
    for match in re.finditer(r"go install \S*?@(\S+)", text):
        assert EXACT.fullmatch(match.group(1).strip("\"'")), match.group(0)
    for match in re.finditer(r"pip install [\"']?(\S+?)[\"']?(?:\s|$)", text):
        assert "==" in match.group(1), match.group(0)
    for match in re.finditer(r"helm (?:install|upgrade)(?:[^\n]*\\\n)*[^\n]*", text):
        chart_ref = match.group(0)
        if re.search(r"\s\w[\w-]*/[\w-]+\s", chart_ref) and "charts/taskforge" not in chart_ref:
            assert "--version" in chart_ref, chart_ref
    for image in re.findall(r"kindest/node:\S+", text):
        assert re.fullmatch(r"kindest/node:v\d+\.\d+\.\d+@sha256:[0-9a-f]{64}", image), image


def test_ci_runs_make_test_and_builds_every_image() -> None:
    workflow = load(REPO / ".github" / "workflows" / "ci.yml")
    assert "make test" in run_text(workflow)
    images = workflow["jobs"]["images"]
    assert images["strategy"]["matrix"]["service"] == ["gateway", "api", "worker", "scheduler"]
    assert "services/${SERVICE}/Dockerfile" in run_text({"jobs": {"images": images}})


def test_e2e_workflow_covers_the_kind_flow() -> None:
    workflow = load(REPO / ".github" / "workflows" / "e2e-kind.yml")
    text = run_text(workflow)
    for needed in (
        "kind create cluster",
        "k8s/kind-config.yaml",
        "kind load docker-image",
        "helm install keda kedacore/keda",
        "stripped-down-crds.yaml",
        "kubectl apply --dry-run=server",
        'helm install "$RELEASE" charts/taskforge',
        "rollout status",
        "helm test",
        "/readyz",
        "pytest tests/e2e",
        "/v1/tasks/batch",
        "kind export logs",
    ):
        assert needed in text, needed
    for service in ("gateway", "api", "worker", "scheduler"):
        assert f"{service}.image.repository=taskforge-{service}" in workflow["env"]["IMAGE_VALUES"]
    failure_steps = [s for s in steps(workflow) if s.get("if") == "failure()"]
    assert failure_steps, "no diagnostics on failure"
    # Versions of kind, helm, KEDA and the operator CRDs come from mk/tools.mk only.
    assert "make -f mk/tools.mk kind helm" in text
    assert not {"KIND_VERSION", "HELM_VERSION", "KEDA_VERSION"} & set(workflow["env"])
