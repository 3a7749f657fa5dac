"""Chart conventions (docs/conventions.md#chart-helpers, #chart-templates): prefixed,
commented helpers and one template folder per service with <service>-<kind>.yaml file names."""

from __future__ import annotations

import re

import pytest

from tests.chart.helm import CHART, REPO

TEMPLATES = CHART / "templates"
DEFINE = re.compile(r'\{\{-?\s*define\s+"([^"]+)"')
#: Folders of other owners (monitoring objects) follow their own naming.
SERVICE_FOLDERS = ("gateway", "api", "worker", "scheduler", "redis")


def defines() -> list[tuple[str, str, str]]:
    """(file, helper name, text before the define) of every helper in templates/**/*.tpl."""
    found = []
    for path in sorted(TEMPLATES.rglob("*.tpl")):
        text = path.read_text()
        for match in DEFINE.finditer(text):
            found.append((str(path.relative_to(CHART)), match.group(1), text[: match.start()]))
    return found


@pytest.mark.parametrize(("file", "name", "before"), defines(), ids=lambda v: str(v)[:40])
def test_helpers_are_prefixed_and_explained(file: str, name: str, before: str) -> None:
    assert name.startswith("taskforge."), f"{file}: helper {name!r} is not prefixed taskforge."
    comment_end = before.rstrip().endswith("*/}}")
    assert comment_end, f"{file}: helper {name!r} has no {{{{/* why */}}}} comment above it"


def test_the_standard_helpers_exist() -> None:
    names = {name for _, name, _ in defines()}
    standard = {
        "taskforge.name",
        "taskforge.fullname",
        "taskforge.chart",
        "taskforge.labels",
        "taskforge.selectorLabels",
        "taskforge.serviceAccountName",
        "taskforge.image",
        "taskforge.metricsPort",
    }
    assert standard <= names


def test_style_grep_check_is_clean() -> None:
    """docs/conventions.md#chart-helpers: no define in templates/*.tpl without the prefix."""
    for path in TEMPLATES.glob("*.tpl"):
        for line in path.read_text().splitlines():
            if 'define "' in line:
                assert '"taskforge.' in line, line


@pytest.mark.parametrize("folder", SERVICE_FOLDERS)
def test_service_templates_are_named_after_their_service(folder: str) -> None:
    files = sorted((TEMPLATES / folder).glob("*"))
    assert files, folder
    for path in files:
        assert path.name.startswith(f"{folder}-") and path.suffix == ".yaml", path.name


def test_top_level_templates_are_shared_objects_only() -> None:
    top = {p.name for p in TEMPLATES.iterdir() if p.is_file()}
    assert top == {"_helpers.tpl", "NOTES.txt", "check-values.yaml", "serviceaccount.yaml"}


def test_ci_scenarios_exist() -> None:
    names = {p.name for p in (CHART / "ci").glob("*-values.yaml")}
    expected = {
        "keda-values.yaml",
        "external-redis-values.yaml",
        "minimal-values.yaml",
        "monitoring-values.yaml",
    }
    assert expected <= names


def test_chart_metadata() -> None:
    text = (CHART / "Chart.yaml").read_text()
    assert "apiVersion: v2" in text
    assert 'appVersion: "0.1.0"' in text
    assert (REPO / "k8s" / "kind-config.yaml").exists()
