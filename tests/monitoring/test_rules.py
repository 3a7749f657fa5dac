"""The chart's PrometheusRule: renders, passes `promtool check rules`, and its alerts behave as
rules_test.yaml says (`promtool test rules`): each fires on a synthetic series and stays silent
on a healthy one. Also: every alert is documented and scoped to its release's namespace, and
every expression names only metrics and labels the services export."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import promql
from tests.monitoring.tooling import CHART, NAMESPACE, helm_template, promtool

pytestmark = pytest.mark.timeout(900)  # the first test may build ./bin/helm

HERE = Path(__file__).parent
RULE_TEMPLATE = "templates/monitoring/prometheusrule.yaml"
MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")
SEVERITIES = {"critical", "warning", "info"}


def render_rules(*values: str) -> dict[str, Any]:
    """The rendered PrometheusRule object."""
    out = helm_template(
        *MONITORING_API, "--set", "metrics.prometheusRule.enabled=true", *values,
        show_only=[RULE_TEMPLATE],
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert len(docs) == 1, out
    assert docs[0]["kind"] == "PrometheusRule"
    return docs[0]


def alerts(rule_object: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rule_object["spec"]["groups"] for r in g["rules"] if "alert" in r]


def promtool_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def test_rules() -> dict[str, Any]:
    """The rules rendered with tests/monitoring/rules-values.yaml (what the unit tests assume)."""
    return render_rules("-f", str(HERE / "rules-values.yaml"))


@pytest.mark.parametrize("values", [None, "ci/monitoring-values.yaml"], ids=["defaults", "ci"])
def test_rendered_rules_pass_promtool_check(values: str | None, tmp_path: Path) -> None:
    args = ["-f", str(CHART / values)] if values else []
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(render_rules(*args)["spec"], sort_keys=False))
    result = promtool_run("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerts_behave_as_rules_test_says(test_rules: dict[str, Any], tmp_path: Path) -> None:
    spec = copy.deepcopy(test_rules["spec"])
    check = tmp_path / "check.yaml"
    check.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = promtool_run("check", "rules", str(check), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool compares annotations verbatim; their templates were checked just above.
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(HERE / "rules_test.yaml", tmp_path / "rules_test.yaml")
    result = promtool_run("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case(test_rules: dict[str, Any]) -> None:
    cases = yaml.safe_load((HERE / "rules_test.yaml").read_text(encoding="utf-8"))["tests"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in alerts(test_rules)}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - silent == set(), "alerts never shown to stay silent"
    assert (fires | silent) - names == set(), "rules_test.yaml tests alerts that do not exist"


def test_alerts_are_labelled_documented_and_linked(test_rules: dict[str, Any]) -> None:
    names = [a["alert"] for a in alerts(test_rules)]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in alerts(test_rules):
        name = alert["alert"]
        assert name.startswith("Taskforge"), name
        assert alert["labels"]["severity"] in SEVERITIES, name
        notes = alert["annotations"]
        assert notes.get("summary") and notes.get("description"), name
        assert notes["runbook_url"].endswith(f"OPERATIONS.md#{name.lower()}"), name


def test_every_selector_is_scoped_to_the_release_namespace(test_rules: dict[str, Any]) -> None:
    for alert in alerts(test_rules):
        for sel in promql.selectors(alert["expr"]):
            assert ("namespace", "=", NAMESPACE) in sel.matchers, (alert["alert"], sel)


def test_expressions_use_only_exported_metrics_and_labels(test_rules: dict[str, Any]) -> None:
    for alert in alerts(test_rules):
        assert promql.problems(alert["expr"]) == [], alert["alert"]


def test_scheduler_gauges_are_never_summed(test_rules: dict[str, Any]) -> None:
    """Every scheduler replica exports the same queue gauges: sum would multiply them."""
    gauges = (
        "taskforge_queue_depth",
        "taskforge_queue_oldest_task_age_seconds",
        "taskforge_queue_events",
    )
    for alert in alerts(test_rules):
        expr = " ".join(alert["expr"].split())
        for gauge in gauges:
            assert f"sum by (namespace, queue) ({gauge}" not in expr, alert["alert"]
            assert f"sum({gauge}" not in expr, alert["alert"]


def test_thresholds_come_from_values(tmp_path: Path) -> None:
    # A values file: `--set` would pass 0.25 as a string, which the schema refuses.
    values = tmp_path / "thresholds.yaml"
    rules = {"backlogThreshold": 4321, "oldestTaskAgeSeconds": 987, "failureRatio": 0.25}
    values.write_text(yaml.safe_dump({"metrics": {"prometheusRule": {"rules": rules}}}))
    rendered = render_rules("-f", str(values))
    by_name = {a["alert"]: " ".join(a["expr"].split()) for a in alerts(rendered)}
    assert by_name["TaskforgeQueueBacklogHigh"].endswith("> 4321")
    assert by_name["TaskforgeQueueOldestTaskTooOld"].endswith("> 987")
    assert ") > 0.25 and on" in by_name["TaskforgeTaskFailureRatioHigh"]


def test_rule_labels_from_values_reach_the_object() -> None:
    rendered = render_rules("--set", "metrics.prometheusRule.labels.release=kube-prometheus-stack")
    assert rendered["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rendered["metadata"]["namespace"] == NAMESPACE
