"""bin/dashlint on the chart's Grafana dashboard, and on broken copies of it: each breakage is
reported by the rule that owns it, the run fails, and nothing else is reported."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.dashlint import run_dashlint
from tests.monitoring.tooling import CHART

pytestmark = pytest.mark.timeout(900)  # the first test may build bin/dashlint

DASHBOARD = CHART / "dashboards" / "taskforge.json"

Dashboard = dict[str, Any]


def panel(dashboard: Dashboard, title: str) -> dict[str, Any]:
    (found,) = [p for p in dashboard["panels"] if p["title"] == title]
    return found


def first_target(dashboard: Dashboard, title: str) -> dict[str, Any]:
    target: dict[str, Any] = panel(dashboard, title)["targets"][0]
    return target


def bad_promql(d: Dashboard) -> None:
    first_target(d, "DLQ size")["expr"] = "max by (queue (taskforge_queue_depth)"


def fixed_rate_range(d: Dashboard) -> None:
    target = first_target(d, "Throughput by outcome")
    assert "[$__rate_interval]" in target["expr"]
    target["expr"] = target["expr"].replace("[$__rate_interval]", "[5m]")


def hard_coded_datasource(d: Dashboard) -> None:
    panel(d, "DLQ size")["datasource"]["uid"] = "prometheus-main"


def no_datasource_variable(d: Dashboard) -> None:
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["type"] != "datasource"]


def unknown_panel_field(d: Dashboard) -> None:
    panel(d, "DLQ size")["titel"] = "DLQ size"


def ill_typed_field(d: Dashboard) -> None:
    panel(d, "DLQ size")["gridPos"]["w"] = "twelve"


def no_pod_matcher(d: Dashboard) -> None:
    target = first_target(d, "DLQ size")
    target["expr"] = target["expr"].replace(', pod=~"$pod"', "")


def raw_counter(d: Dashboard) -> None:
    target = first_target(d, "Started by queue")
    target["expr"] = target["expr"].replace("rate(", "(").replace("[$__rate_interval]", "")


def unknown_unit(d: Dashboard) -> None:
    panel(d, "DLQ size")["fieldConfig"]["defaults"]["unit"] = "tasks"


def editable(d: Dashboard) -> None:
    d["editable"] = True


BREAKAGES: list[tuple[Callable[[Dashboard], None], set[str], str]] = [
    (bad_promql, {"target-promql-rule"}, 'panel "DLQ size": target A: invalid PromQL query'),
    (fixed_rate_range, {"target-rate-interval-rule"}, "rate should use $__rate_interval"),
    (hard_coded_datasource, {"panel-datasource-rule"}, "uses 'prometheus-main'"),
    (
        no_datasource_variable,
        {"template-datasource-rule", "panel-datasource-rule"},
        "does not have a templated data source",
    ),
    (unknown_panel_field, {"dashboard-schema"}, "panel \"DLQ size\": unexpected field 'titel'"),
    (ill_typed_field, {"dashboard-schema"}, 'panel "DLQ size": gridPos.w: json: cannot unmarshal'),
    (no_pod_matcher, {"target-instance-rule"}, "pod selector not found"),
    (raw_counter, {"target-counter-agg-rule"}, "'taskforge_tasks_started_total' is not aggregated"),
    (unknown_unit, {"panel-units-rule"}, "invalid units defined: 'tasks'"),
    (editable, {"uneditable-dashboard"}, "it should be set to 'editable: false'"),
]


def test_the_chart_dashboard_passes() -> None:
    result = run_dashlint(DASHBOARD)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("breakage", "rules", "message"), BREAKAGES, ids=[b[0].__name__ for b in BREAKAGES]
)
def test_a_broken_dashboard_fails_with_the_rule_that_owns_the_breakage(
    tmp_path: Path, breakage: Callable[[Dashboard], None], rules: set[str], message: str
) -> None:
    broken = copy.deepcopy(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    breakage(broken)
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(broken), encoding="utf-8")

    result = run_dashlint(path)

    lines = result.stdout.splitlines()
    assert result.returncode == 1, result.stdout + result.stderr
    assert {line.split(":", 1)[0] for line in lines} == rules, lines
    assert any(message in line for line in lines), lines


def test_every_file_is_linted_and_one_bad_file_fails_the_run(tmp_path: Path) -> None:
    broken = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    editable(broken)
    path = tmp_path / "editable.json"
    path.write_text(json.dumps(broken), encoding="utf-8")

    result = run_dashlint(DASHBOARD, path)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        'uneditable-dashboard: dashboard "TaskForge": '
        "is editable, it should be set to 'editable: false'"
    ]


def test_unreadable_input_is_a_usage_error(tmp_path: Path) -> None:
    result = run_dashlint(tmp_path / "missing.json")
    assert result.returncode == 2
    assert "missing.json" in result.stderr
