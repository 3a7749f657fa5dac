"""ServiceMonitor (gateway, api, scheduler) and PodMonitor (workers): they select the pods and
Service ports the chart renders, carry the labels Prometheus selects on, and refuse to render
without the Prometheus Operator API instead of vanishing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.monitoring.tooling import NAMESPACE, helm_template

pytestmark = pytest.mark.timeout(900)  # the first test may build ./bin/helm

MONITORING_API = ("--api-versions", "monitoring.coreos.com/v1")
ALL_ON = (
    "--set",
    "metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,"
    "metrics.prometheusRule.enabled=true,metrics.grafanaDashboard.enabled=true",
)
TOGGLES = {
    "metrics.serviceMonitor.enabled": "ServiceMonitor",
    "metrics.podMonitor.enabled": "PodMonitor",
    "metrics.prometheusRule.enabled": "PrometheusRule",
}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    """Every object of the chart with all monitoring objects on."""
    out = helm_template(
        *MONITORING_API, *ALL_ON, "--set", "metrics.serviceMonitor.labels.release=kps"
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + In/NotIn/Exists) against a label set."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or (
            op == "NotIn" and value in expr["values"]
        ):
            return False
        if (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def test_service_monitor_scrapes_the_metrics_port_of_gateway_api_and_scheduler(
    objects: list[dict[str, Any]],
) -> None:
    monitor = only(objects, "ServiceMonitor")
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert [e["port"] for e in spec["endpoints"]] == ["metrics"]
    assert spec["endpoints"][0]["path"] == "/metrics"
    selected = {
        s["metadata"]["labels"].get("app.kubernetes.io/component"): s
        for s in objects
        if s["kind"] == "Service" and matches(spec["selector"], s["metadata"]["labels"])
    }
    assert set(selected) == {"gateway", "api", "scheduler"}
    for component, service in selected.items():
        names = {p["name"] for p in service["spec"]["ports"]}
        assert "metrics" in names, component
    assert monitor["metadata"]["labels"]["release"] == "kps"


def test_service_monitor_takes_interval_and_timeout_from_values(
    objects: list[dict[str, Any]],
) -> None:
    endpoint = only(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["interval"] == "30s"
    assert endpoint["scrapeTimeout"] == "10s"


def test_pod_monitor_scrapes_the_worker_pods_metrics_port(objects: list[dict[str, Any]]) -> None:
    monitor = only(objects, "PodMonitor")
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert [e["port"] for e in spec["podMetricsEndpoints"]] == ["metrics"]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    selected = [
        w["metadata"]["name"]
        for w in workloads
        if matches(spec["selector"], w["spec"]["template"]["metadata"]["labels"])
    ]
    assert selected == [f"{NAMESPACE}-worker"]
    (worker,) = [w for w in workloads if w["metadata"]["name"] == f"{NAMESPACE}-worker"]
    ports = {
        p["name"]
        for c in worker["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }
    assert "metrics" in ports
    # Without labels of its own, the PodMonitor takes the ServiceMonitor's (one release: label).
    assert monitor["metadata"]["labels"]["release"] == "kps"


@pytest.mark.parametrize(("toggle", "kind"), sorted(TOGGLES.items()))
def test_monitoring_objects_fail_loudly_without_the_operator_api(toggle: str, kind: str) -> None:
    result = helm_template("--set", f"{toggle}=true", check=False)
    assert result.returncode != 0, f"{kind} rendered (or vanished) without monitoring.coreos.com/v1"
    assert "monitoring.coreos.com/v1" in result.stderr
    assert toggle in result.stderr


def test_capabilities_extra_api_versions_stand_in_for_the_flag() -> None:
    out = helm_template(
        "--set", "capabilities.extraApiVersions={monitoring.coreos.com/v1}",
        "--set", "metrics.serviceMonitor.enabled=true",
        show_only=["templates/monitoring/servicemonitor.yaml"],
    ).stdout  # fmt: skip
    assert "kind: ServiceMonitor" in out


def test_monitoring_objects_are_off_by_default() -> None:
    out = helm_template(*MONITORING_API).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(out) if d}
    assert kinds.isdisjoint({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
