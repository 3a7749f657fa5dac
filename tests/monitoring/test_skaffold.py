"""skaffold.yaml: four artifacts built from the service Dockerfiles, one Helm release of
charts/taskforge whose image values exist in the chart, a kind profile, and a gateway
port-forward that matches the rendered Service. (No skaffold binary here: the file is checked
structurally; `skaffold diagnose` is the check to run where skaffold is installed.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.monitoring.tooling import CHART, REPO, helm_template

pytestmark = pytest.mark.timeout(900)  # the Service test may build ./bin/helm

SERVICES = ("gateway", "api", "worker", "scheduler")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def release(config: dict[str, Any]) -> dict[str, Any]:
    (only,) = config["deploy"]["helm"]["releases"]
    return only


def has_key(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in config["profiles"] if p["name"] == name]
    return found


def test_schema_version(config: dict[str, Any]) -> None:
    assert re.fullmatch(r"skaffold/v4beta\d+", config["apiVersion"]), config["apiVersion"]
    assert config["kind"] == "Config"


def test_four_artifacts_built_from_the_service_dockerfiles(config: dict[str, Any]) -> None:
    artifacts = config["build"]["artifacts"]
    assert [a["image"] for a in artifacts] == [f"taskforge-{s}" for s in SERVICES]
    for artifact, service in zip(artifacts, SERVICES, strict=True):
        context = REPO / artifact.get("context", ".")
        assert context == REPO, "the Dockerfiles need the repository root as context"
        dockerfile = artifact["docker"]["dockerfile"]
        assert dockerfile == f"services/{service}/Dockerfile"
        assert (context / dockerfile).is_file()


def test_helm_release_uses_the_chart(config: dict[str, Any]) -> None:
    rel = release(config)
    assert (REPO / rel["chartPath"] / "Chart.yaml").is_file()
    assert REPO / rel["chartPath"] == CHART


def test_image_values_follow_skaffold_naming_and_exist_in_the_chart(
    config: dict[str, Any], values: dict[str, Any]
) -> None:
    templates = release(config)["setValueTemplates"]
    expected = {}
    for service in SERVICES:
        env = f"taskforge_{service}"  # the artifact name with '-' replaced by '_'
        expected[f"{service}.image.repository"] = f"{{{{.IMAGE_REPO_{env}}}}}"
        expected[f"{service}.image.tag"] = f"{{{{.IMAGE_TAG_{env}}}}}"
    assert templates == expected
    missing = [key for key in templates if not has_key(values, key)]
    assert missing == [], "keys absent from charts/taskforge/values.yaml"


def test_profile_values_exist(config: dict[str, Any], values: dict[str, Any]) -> None:
    for prof in config["profiles"]:
        for patch in prof.get("patches", []):
            if patch["path"].endswith("/setValues"):
                missing = [k for k in patch["value"] if not has_key(values, k)]
                assert missing == [], (prof["name"], missing)


def test_kind_profile(config: dict[str, Any]) -> None:
    kind = profile(config, "kind")
    assert {"kubeContext": "kind-.*"} in kind["activation"]
    patches = {p["path"]: p["value"] for p in kind["patches"]}
    assert patches["/build/local/push"] is False
    files = patches["/deploy/helm/releases/0/valuesFiles"]
    assert files == ["k8s/values-kind.yaml"]
    assert (REPO / files[0]).is_file(), "k8s/values-kind.yaml is missing"
    # The kind cluster publishes the gateway NodePort on host port 8080 already.
    published = {
        m["hostPort"]
        for node in yaml.safe_load((REPO / "k8s" / "kind-config.yaml").read_text())["nodes"]
        for m in node.get("extraPortMappings", [])
    }
    assert patches["/portForward/0/localPort"] not in published


def test_gateway_port_forward_matches_the_rendered_service(config: dict[str, Any]) -> None:
    (forward,) = config["portForward"]
    rel = release(config)
    assert forward["resourceType"] == "service"
    assert forward["namespace"] == rel["namespace"]
    out = helm_template(show_only=["templates/gateway/gateway-service.yaml"]).stdout
    (service,) = [d for d in yaml.safe_load_all(out) if d]
    assert forward["resourceName"] == service["metadata"]["name"]
    http = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    assert http and http[0]["port"] == forward["port"]
