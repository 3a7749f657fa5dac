"""The kind cluster config, the k8s/ values files and the tool pins agree with each other."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.chart.helm import REPO, VALUES_FILES, by_component, render

KIND_CONFIG: dict[str, Any] = yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())
TOOLS_MK = (REPO / "mk" / "tools.mk").read_text()
VALUES_KIND_TEXT = (REPO / "k8s" / "values-kind.yaml").read_text()


def pin(name: str) -> str:
    """A version pinned in mk/tools.mk."""
    match = re.search(rf"^{name} \?= (\S+)$", TOOLS_MK, re.MULTILINE)
    assert match, f"{name} is not pinned in mk/tools.mk"
    return match.group(1)


def test_tools_are_pinned_to_exact_versions() -> None:
    assert pin("HELM_VERSION") == "v3.22.0"
    assert pin("KIND_VERSION") == "v0.33.0"
    assert pin("ACTIONLINT_VERSION") == "v1.7.12"
    for name in ("KUBECONFORM_VERSION", "KEDA_VERSION", "PROMETHEUS_OPERATOR_VERSION"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", pin(name)), name


def test_kind_enforces_network_policies() -> None:
    major, minor, _ = (int(p) for p in pin("KIND_VERSION").lstrip("v").split("."))
    assert (major, minor) >= (0, 24), "kind enforces NetworkPolicy from v0.24"


def test_kind_nodes_are_pinned_by_digest_to_the_schema_version() -> None:
    assert KIND_CONFIG["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    images = {node["image"] for node in KIND_CONFIG["nodes"]}
    assert len(images) == 1
    (image,) = images
    assert re.fullmatch(r"kindest/node:v[\d.]+@sha256:[0-9a-f]{64}", image), image
    # kubeconform validates against the Kubernetes version the e2e cluster runs.
    assert image.split(":")[1].split("@")[0] == pin("KUBERNETES_SCHEMA_VERSION")


def _node_ports(docs: list[dict[str, Any]]) -> list[int]:
    return [
        port["nodePort"]
        for doc in docs
        if doc["kind"] == "Service"
        for port in doc["spec"]["ports"]
        if "nodePort" in port
    ]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_no_values_file_pins_a_node_port(values_file: str) -> None:
    """A node port is unique cluster-wide: a pinned one makes a second release fail to install."""
    assert _node_ports(render(files=(values_file,))) == []


def test_the_gateway_node_port_kind_publishes_is_set_at_install() -> None:
    mappings = KIND_CONFIG["nodes"][0]["extraPortMappings"]
    assert all(m["listenAddress"] == "127.0.0.1" for m in mappings)
    (published,) = {m["containerPort"] for m in mappings}
    assert f"--set gateway.service.nodePort={published}" in VALUES_KIND_TEXT
    docs = render(
        {"gateway": {"service": {"nodePort": published}}}, files=("k8s/values-kind.yaml",)
    )
    service = by_component(docs, "Service", "gateway")["spec"]
    assert service["type"] == "NodePort"
    (http,) = [p for p in service["ports"] if p["name"] == "http"]
    assert http["nodePort"] == published


def test_the_kind_values_scale_workers_with_keda() -> None:
    docs = render(files=("k8s/values-kind.yaml",))
    assert {d["kind"] for d in docs} >= {"ScaledObject", "TriggerAuthentication", "Job"}
    assert "replicas" not in by_component(docs, "Deployment", "worker")["spec"]
