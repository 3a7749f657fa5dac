"""docs/metrics.md and the code agree both ways: every metric the services define is catalogued
with its type and labels, every catalogued metric is defined, and the "alerts" and "panels"
columns name exactly the chart's alerts and the dashboard's panels that query each metric.

The "exported by" column is checked against what a real Prometheus scrapes from each service in
tests/monitoring/test_prometheus_live.py.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from tests.monitoring import promql
from tests.monitoring.test_rules import alerts, render_rules
from tests.monitoring.tooling import CHART, REPO

pytestmark = pytest.mark.timeout(900)  # the first test may build ./bin/helm

CATALOGUE = REPO / "docs" / "metrics.md"
DASHBOARD = CHART / "dashboards" / "taskforge.json"
COLUMNS = ("metric", "type", "labels", "exported by", "meaning", "alerts", "panels")
SERVICE_NAMES = frozenset({"gateway", "api", "worker", "scheduler"})
#: What an empty list cell says.
NONE = "none"
_CODE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Row:
    """One catalogued metric."""

    name: str
    kind: str
    labels: frozenset[str]
    services: frozenset[str]
    meaning: str
    alerts: frozenset[str]
    panels: frozenset[str]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _names(cell: str, separator: str) -> frozenset[str]:
    """The items of a list cell (``none`` -> empty); backticks around an item are dropped."""
    if cell == NONE:
        return frozenset()
    return frozenset(part.strip().strip("`") for part in cell.split(separator) if part.strip())


@cache
def catalogue() -> tuple[Row, ...]:
    """The rows of the catalogue's table (the one whose header is :data:`COLUMNS`)."""
    lines = CATALOGUE.read_text(encoding="utf-8").splitlines()
    start = next(
        (i for i, line in enumerate(lines) if tuple(_cells(line)) == COLUMNS and "|" in line),
        None,
    )
    assert start is not None, f"{CATALOGUE.name}: no table with the columns {COLUMNS}"
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(COLUMNS), f"{CATALOGUE.name}: {line}"
        name, kind, labels, services, meaning, alert_cell, panel_cell = cells
        metric = _CODE.fullmatch(name)
        assert metric, f"{CATALOGUE.name}: the metric name goes in backticks: {name}"
        rows.append(Row(
            metric.group(1), kind, frozenset(_CODE.findall(labels)), _names(services, ","),
            meaning, _names(alert_cell, ","), _names(panel_cell, ";"),
        ))  # fmt: skip
    assert rows, f"{CATALOGUE.name}: the table is empty"
    return tuple(rows)


def _family(series: str) -> str | None:
    metric = promql.series_index().get(series)
    return metric.name if metric else None


def alert_uses() -> dict[str, set[str]]:
    """Metric family -> names of the chart's alerts (default values) whose expression uses it."""
    uses: dict[str, set[str]] = defaultdict(set)
    for alert in alerts(render_rules()):
        for selector in promql.selectors(alert["expr"]):
            family = _family(selector.metric)
            assert family, (alert["alert"], selector.metric)
            uses[family].add(alert["alert"])
    return uses


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus query of ``dashboard``, rows' panels included."""
    found = []
    pending = list(dashboard["panels"])
    while pending:
        panel = pending.pop(0)
        pending.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            if "expr" in target and source.get("uid") == "${datasource}":
                found.append((panel["title"], str(target["expr"])))
    return found


def panel_uses() -> dict[str, set[str]]:
    """Metric family -> titles of the dashboard's panels that query it (read now: it changes)."""
    uses: dict[str, set[str]] = defaultdict(set)
    for title, expr in dashboard_targets(json.loads(DASHBOARD.read_text(encoding="utf-8"))):
        for selector in promql.selectors(expr):
            family = _family(selector.metric)
            assert family, (title, selector.metric)
            uses[family].add(title)
    return uses


def test_catalogue_rows_are_well_formed() -> None:
    names = [row.name for row in catalogue()]
    assert len(names) == len(set(names)), "a metric is catalogued twice"
    for row in catalogue():
        assert row.services, f"{row.name}: no service exports it?"
        assert row.services <= SERVICE_NAMES, (row.name, row.services - SERVICE_NAMES)
        assert len(row.meaning) > 10, f"{row.name}: say what it means"


def test_every_defined_metric_is_catalogued_with_its_type_and_labels() -> None:
    documented = {row.name: row for row in catalogue()}
    for metric in promql.declared_metrics().values():
        row = documented.get(metric.name)
        assert row is not None, f"{metric.name} is defined but not in docs/metrics.md"
        assert row.kind == metric.kind.lower(), (metric.name, row.kind, metric.kind)
        assert row.labels == metric.labels, (metric.name, sorted(row.labels), sorted(metric.labels))


def test_every_catalogued_metric_is_defined() -> None:
    defined = promql.declared_metrics()
    missing = [row.name for row in catalogue() if row.name not in defined]
    assert missing == [], "catalogued but defined nowhere under services/"


@pytest.mark.parametrize(
    ("column", "find_uses", "users"),
    [
        ("alerts", alert_uses, "the chart's alerts using it"),
        ("panels", panel_uses, "the dashboard's panels querying it"),
    ],
)
def test_each_used_by_column_is_exactly_what_uses_each_metric(
    column: str, find_uses: Callable[[], dict[str, set[str]]], users: str
) -> None:
    uses = find_uses()
    assert uses, f"nothing in {column} uses a taskforge metric"
    for row in catalogue():
        listed = getattr(row, column)
        assert listed == uses.get(row.name, set()), (
            f"{row.name}: catalogued {column} {sorted(listed)}, "
            f"{users} {sorted(uses.get(row.name, set()))}"
        )
