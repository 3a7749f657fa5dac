"""The Grafana dashboard (charts/taskforge/dashboards/taskforge.json): valid JSON, laid out on
Grafana's 24-column grid, every query names only metrics and labels the services export, and the
chart ships it as a ConfigMap the Grafana sidecar picks up."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.monitoring import promql
from tests.monitoring.tooling import CHART, helm_template

pytestmark = pytest.mark.timeout(900)  # the ConfigMap test may build ./bin/helm

DASHBOARD = CHART / "dashboards" / "taskforge.json"
CONFIGMAP = "templates/monitoring/grafana-dashboard-configmap.yaml"

#: What the dashboard must show (panel titles).
REQUIRED_PANELS = {
    "Throughput by outcome",
    "Queue depth by state",
    "Oldest waiting task age",
    "Task duration",
    "In-flight tasks",
    "Leases lost",
    "DLQ size",
    "Gateway requests by status class",
    "Gateway latency",
    "API requests by route",
    "API latency p95 by route",
    "5xx ratio",
    "Slow tasks: find their traces",
}

#: The Jaeger UI search the trace links open: the worker's service name (OTEL_SERVICE_NAME
#: default) and the dashboard's time range, which Grafana gives in ms and Jaeger takes in µs.
JAEGER_SEARCH = "${traces_url}/search?service=taskforge-worker&"
JAEGER_TIME_RANGE = "&start=${__from}000&end=${__to}000"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "taskforge-overview"
    assert dashboard["title"] == "TaskForge"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_required_panels_are_present(dashboard: dict[str, Any]) -> None:
    assert REQUIRED_PANELS - {p["title"] for p in panels(dashboard)} == set()


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for y in range(pos["y"], pos["y"] + pos["h"]):
            for x in range(pos["x"], pos["x"] + pos["w"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_queries_use_the_datasource_and_defined_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    builtin = {"__rate_interval", "__interval", "__range"}
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used - variables - builtin == set(), (panel["title"], target["expr"])


def test_queries_use_only_exported_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    used: set[str] = set()
    for panel in panels(dashboard):
        for target in panel["targets"]:
            assert promql.problems(target["expr"]) == [], (panel["title"], target["expr"])
            used.update(s.metric for s in promql.selectors(target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert promql.problems(variable["definition"]) == [], variable["name"]
    assert used, "the dashboard queries no taskforge metric"


def test_scheduler_gauges_are_aggregated_with_max(dashboard: dict[str, Any]) -> None:
    """Each scheduler replica exports the same queue gauges; summing them raw double-counts."""
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for gauge in ("taskforge_queue_depth", "taskforge_queue_oldest_task_age_seconds"):
                if gauge in expr:
                    assert re.search(rf"max(?: by \([^)]*\))? \({gauge}", expr), expr


def test_traces_url_variable_is_an_empty_textbox(dashboard: dict[str, Any]) -> None:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "traces_url"]
    assert variable["type"] == "textbox"
    assert variable["label"] == "Trace backend URL"
    assert variable["query"] == ""
    assert "current" not in variable


def test_dashboard_links_to_the_workers_traces_in_jaeger(dashboard: dict[str, Any]) -> None:
    (link,) = [link for link in dashboard["links"] if link["title"] == "Traces (Jaeger)"]
    assert link["type"] == "link"
    assert link["url"].startswith(JAEGER_SEARCH)
    assert JAEGER_TIME_RANGE in link["url"]
    assert re.search(r"&minDuration=\d+(?:ms|s)&", link["url"]), link["url"]


def test_slow_tasks_table_links_each_task_type_to_its_slow_traces(
    dashboard: dict[str, Any],
) -> None:
    (table,) = [p for p in panels(dashboard) if p["title"] == "Slow tasks: find their traces"]
    assert table["type"] == "table"
    assert "exemplars" in table["description"]
    (target,) = table["targets"]
    assert "by (le, queue, task)" in target["expr"]
    assert target["format"] == "table"
    (override,) = table["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byName", "options": "Value"}
    (links,) = [p["value"] for p in override["properties"] if p["id"] == "links"]
    (url,) = [link["url"] for link in links]
    assert url.startswith(JAEGER_SEARCH)
    assert JAEGER_TIME_RANGE in url
    # The worker's span is named `process {type}`; the row's task label is that type, and the
    # clicked p99 (in seconds) is the lower bound of the span durations searched for.
    assert "&operation=process%20${__data.fields.task}&" in url
    assert "&minDuration=${__value.raw}s&" in url


def test_chart_ships_the_dashboard_as_a_sidecar_configmap() -> None:
    out = helm_template(
        "--set", "metrics.grafanaDashboard.enabled=true",
        "--set", "metrics.grafanaDashboard.labels.team=platform",
        show_only=[CONFIGMAP],
    ).stdout  # fmt: skip
    (configmap,) = [d for d in yaml.safe_load_all(out) if d]
    assert configmap["kind"] == "ConfigMap"
    labels = configmap["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1"
    assert labels["team"] == "platform"
    assert labels["app.kubernetes.io/instance"] == "taskforge"
    shipped = json.loads(configmap["data"]["taskforge.json"])
    assert shipped == json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert len(configmap["data"]["taskforge.json"].encode()) < 900 * 1024  # ConfigMaps max 1 MiB


def test_dashboard_is_off_by_default() -> None:
    out = helm_template(show_only=[CONFIGMAP], check=False)
    assert "ConfigMap" not in out.stdout
