"""The tracing block: the OTEL_* variables each service gets (k8s/OPERATIONS.md#tracing), the
values the chart refuses, and the egress the collector needs when egress is restricted."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart.helm import (
    NAMESPACE,
    VALUES_FILES,
    Doc,
    by_component,
    containers,
    pod_objects,
    render,
    render_error,
)

SERVICES = ("gateway", "api", "worker", "scheduler")
ENDPOINT = "http://jaeger-collector.observability:4318"
ON: dict[str, Any] = {"tracing": {"enabled": True, "endpoint": ENDPOINT}}
#: The pod name Kubernetes would substitute for $(K8S_POD_NAME).
POD = "taskforge-worker-6d9f-abcde"


def _env(docs: list[Doc], service: str) -> list[dict[str, Any]]:
    return list(containers(by_component(docs, "Deployment", service))[0].get("env", []))


def _values(docs: list[Doc], service: str) -> dict[str, str]:
    """Plain values of the service's env entries, $(VAR) references expanded as Kubernetes does
    (only from variables defined above, with K8S_POD_NAME standing for the downward API)."""
    seen: dict[str, str] = {}
    for var in _env(docs, service):
        if var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            seen[var["name"]] = POD
        elif "value" in var:
            seen[var["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: seen.get(m.group(1), m.group(0)),
                str(var["value"]),
            )
    return seen


def _attributes(env: dict[str, str]) -> dict[str, str]:
    pairs = [pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"].split(",")]
    assert all(len(pair) == 2 for pair in pairs), env["OTEL_RESOURCE_ATTRIBUTES"]
    return dict((key, value) for key, value in pairs)


def _egress(docs: list[Doc], service: str) -> list[dict[str, Any]]:
    return list(by_component(docs, "NetworkPolicy", service)["spec"].get("egress", []))


@pytest.mark.parametrize(
    "values",
    [{}, {"tracing": {"endpoint": ENDPOINT}}, {"networkPolicy": {"restrictEgress": True}}],
    ids=["defaults", "endpoint-but-disabled", "restricted-egress"],
)
def test_disabled_sets_no_otel_variable_anywhere(values: dict[str, Any]) -> None:
    docs = render(values)
    for obj in pod_objects(docs):
        for container in containers(obj):
            names = {var["name"] for var in container.get("env", [])}
            assert not {n for n in names if n.startswith("OTEL_")}, obj["metadata"]["name"]
            assert "K8S_POD_NAME" not in names
    config = [d for d in docs if d["kind"] == "ConfigMap"]
    assert not [k for d in config for k in d.get("data", {}) if k.startswith("OTEL_")]
    if values.get("networkPolicy"):
        assert all(len(_egress(docs, s)) == (3 if s == "gateway" else 2) for s in SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_enabled_gives_each_service_the_endpoint_sampler_and_its_own_name(service: str) -> None:
    env = _values(render(ON), service)
    assert env["OTEL_SERVICE_NAME"] == f"taskforge-{service}"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert float(env["OTEL_TRACES_SAMPLER_ARG"]) == 1.0
    assert float(env["OTEL_EXPORTER_OTLP_TIMEOUT"]) == 10
    assert _attributes(env) == {
        "k8s.namespace.name": NAMESPACE,
        "k8s.pod.name": POD,
        "service.version": "0.1.0",
    }
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in {v["name"] for v in _env(render(ON), service)}


@pytest.mark.parametrize("service", SERVICES)
def test_the_pod_name_comes_from_the_downward_api_before_it_is_referenced(service: str) -> None:
    names = [var["name"] for var in _env(render(ON), service)]
    (pod,) = [v for v in _env(render(ON), service) if v["name"] == "K8S_POD_NAME"]
    assert pod["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert names.index("K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")


def test_extra_env_comes_after_the_tracing_variables() -> None:
    extra = {"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "1000"}
    values = {"tracing": ON["tracing"], **{s: {"extraEnv": [extra]} for s in SERVICES}}
    docs = render(values)
    for service in SERVICES:
        names = [var["name"] for var in _env(docs, service)]
        assert names[-1] == "OTEL_BSP_SCHEDULE_DELAY"
        assert names.index("OTEL_SERVICE_NAME") < len(names) - 1


def test_resource_attributes_environment_and_the_running_image_tag() -> None:
    tracing = {
        **ON["tracing"],
        "environment": "production",
        "resourceAttributes": {"k8s.cluster.name": "eu-1", "k8s.pod.name": "spoofed", "n": 3},
    }
    docs = render(
        {"tracing": tracing, "global": {"imageTag": "1.2.3"}, "api": {"image": {"tag": "1.2.4"}}}
    )
    worker = _attributes(_values(docs, "worker"))
    assert worker == {
        "deployment.environment.name": "production",
        "k8s.cluster.name": "eu-1",
        "k8s.namespace.name": NAMESPACE,
        "k8s.pod.name": POD,  # the chart's own keys win over a value of the same name
        "n": "3",
        "service.version": "1.2.3",
    }
    assert _attributes(_values(docs, "api"))["service.version"] == "1.2.4"


@pytest.mark.parametrize(
    ("sampler", "arg"),
    [
        ("traceidratio", "0.25"),
        ("parentbased_traceidratio", "0.25"),
        ("always_on", None),
        ("parentbased_always_off", None),
    ],
)
def test_the_sampler_argument_is_set_only_for_ratio_samplers(sampler: str, arg: str | None) -> None:
    docs = render({"tracing": {**ON["tracing"], "sampler": sampler, "samplerArg": 0.25}})
    for service in SERVICES:
        env = _values(docs, service)
        assert env["OTEL_TRACES_SAMPLER"] == sampler
        assert env.get("OTEL_TRACES_SAMPLER_ARG") == arg


def test_headers_come_from_the_existing_secret() -> None:
    secret = {"name": "otlp-auth", "key": "headers"}
    docs = render({"tracing": {**ON["tracing"], "headersSecret": secret}})
    for service in SERVICES:
        (var,) = [v for v in _env(docs, service) if v["name"] == "OTEL_EXPORTER_OTLP_HEADERS"]
        assert var == {"name": "OTEL_EXPORTER_OTLP_HEADERS", "valueFrom": {"secretKeyRef": secret}}
        assert "OTEL_EXPORTER_OTLP_HEADERS" not in _values(docs, service)  # never a plain value


@pytest.mark.parametrize(
    ("tracing", "messages"),
    [
        ({"enabled": True}, ["tracing.enabled=true needs tracing.endpoint"]),
        (
            {"enabled": True, "endpoint": "http://otel:4318/v1/traces"},
            ["tracing.endpoint (http://otel:4318/v1/traces)", "without /v1/traces"],
        ),
        (
            {"enabled": True, "endpoint": "http://otel:4317"},
            ["uses port 4317, the OTLP/gRPC port", "HTTP/protobuf"],
        ),
        # values.schema.json
        ({"sampler": "ratio"}, ["/tracing/sampler", "parentbased_traceidratio"]),
        ({"endpoint": "otel-collector:4318"}, ["/tracing/endpoint"]),
        ({"endpoint": "grpc://otel:4317"}, ["/tracing/endpoint"]),
        ({"endpoint": "http://user:pw@otel:4318"}, ["/tracing/endpoint"]),
        ({"samplerArg": 1.5}, ["/tracing/samplerArg"]),
        ({"timeoutSeconds": 0}, ["/tracing/timeoutSeconds"]),
        ({"resourceAttributes": {"team": "a,b"}}, ["/tracing/resourceAttributes/team"]),
        ({"headersSecret": {"name": "Not_A_Name"}}, ["/tracing/headersSecret/name"]),
        ({"exporter": "grpc"}, ["'exporter' not allowed"]),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_bad_tracing_values_fail_with_a_message(
    tracing: dict[str, Any], messages: list[str]
) -> None:
    error = render_error({"tracing": tracing})
    for message in messages:
        assert message in error, f"{message!r} not in:\n{error}"


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [
        (ENDPOINT, 4318),
        ("https://otlp.example.com", 443),
        ("http://otel-collector", 80),
        ("https://otlp.example.com:8443/otlp", 8443),
        ("http://[fd00::1]:4318", 4318),
    ],
)
def test_restricted_egress_lets_every_service_reach_the_collector(endpoint: str, port: int) -> None:
    values = {
        "tracing": {"enabled": True, "endpoint": endpoint},
        "networkPolicy": {"restrictEgress": True},
    }
    docs = render(values)
    for service in SERVICES:
        rules = _egress(docs, service)
        assert rules[-1] == {"ports": [{"port": port, "protocol": "TCP"}]}, service
        assert len(rules) == (4 if service == "gateway" else 3)


def test_the_collector_egress_can_be_narrowed_to_peers() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "otel"}}}]
    values = {
        "tracing": {**ON["tracing"], "egressTo": peers},
        "networkPolicy": {"restrictEgress": True},
    }
    docs = render(values)
    for service in SERVICES:
        assert {"to": peers, "ports": [{"port": 4318, "protocol": "TCP"}]} in _egress(docs, service)


def test_the_ci_scenario_turns_tracing_on() -> None:
    name = "charts/taskforge/ci/tracing-values.yaml"
    assert name in VALUES_FILES
    docs = render(files=(name,))
    for service in SERVICES:
        env = _values(docs, service)
        assert env["OTEL_SERVICE_NAME"] == f"taskforge-{service}"
        assert _attributes(env)["deployment.environment.name"] == "staging"
