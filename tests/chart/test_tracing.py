"""The tracing block: the OTEL_* variables each service gets (k8s/OPERATIONS.md#tracing), the
values the chart refuses, and the egress the collector needs when egress is restricted."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from scripts.chart_launch import ChartStack, secret_value
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
from tests.support.jaeger import Jaeger

SERVICES = ("gateway", "api", "worker", "scheduler")
ENDPOINT = "http://jaeger-collector.observability:4318"
ON: dict[str, Any] = {"tracing": {"enabled": True, "endpoint": ENDPOINT}}
T = TypeVar("T")
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


class PodStack(ChartStack):
    """The chart-driven launch plus what the kubelet does for the tracing variables and a local
    launch cannot: the downward API's pod name, and $(K8S_POD_NAME) expanded in the value that
    refers to it."""

    def service_env(self, service: str) -> dict[str, str]:
        env = super().service_env(service)
        env["K8S_POD_NAME"] = f"{service}-pod"
        attributes = env["OTEL_RESOURCE_ATTRIBUTES"]
        env["OTEL_RESOURCE_ATTRIBUTES"] = attributes.replace("$(K8S_POD_NAME)", f"{service}-pod")
        return env


@pytest.fixture(scope="module")
def traced(jaeger: Jaeger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodStack]:
    """The developer values with tracing on, pointed at that Jaeger; the batch delay is cut
    through each service's extraEnv (which also shows it reaches the SDK after the chart's)."""
    fast = [{"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "200"}]
    tracing = {
        "enabled": True,
        "endpoint": jaeger.otlp_endpoint,
        "environment": "ci",
        "resourceAttributes": {"k8s.cluster.name": "local"},
    }
    values = {"tracing": tracing, **{s: {"extraEnv": fast} for s in SERVICES}}
    docs = render(values, files=("k8s/values-dev.yaml",))
    with PodStack(docs, work_dir=tmp_path_factory.mktemp("traced-chart-stack")) as stack:
        yield stack


def _resources(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Resource attributes (string values) by service name, from OTLP JSON."""
    found: dict[str, dict[str, Any]] = {}
    for spans in document.get("result", document).get("resourceSpans", []):
        pairs = spans.get("resource", {}).get("attributes", [])
        attributes = {a["key"]: a.get("value", {}).get("stringValue") for a in pairs}
        found[str(attributes.get("service.name"))] = attributes
    return found


def _poll(fetch: Callable[[], T], ready: Callable[[T], bool], what: Callable[[], str]) -> T:
    """``fetch()`` once it is ``ready``; the failure says what was awaited and the state then."""
    deadline = time.monotonic() + 30.0
    while True:
        value = fetch()
        if ready(value):
            return value
        assert time.monotonic() < deadline, f"no {what()} within 30s; last: {value}"
        time.sleep(0.2)


@pytest.mark.timeout(120, func_only=True)
def test_the_rendered_variables_reach_a_real_trace_backend(
    traced: PodStack, jaeger: Jaeger
) -> None:
    """A delayed echo task through the gateway: its trace holds the gateway, api and worker,
    the scheduler's promote pass is a trace of its own, and every service's resource carries
    the chart's name and attributes."""
    env = containers(by_component(traced.docs, "Deployment", "gateway"))[0]["env"]
    (ref,) = [
        v["valueFrom"]["secretKeyRef"] for v in env if v["name"] == "TASKFORGE_BOOTSTRAP_API_KEY"
    ]
    headers = {"Authorization": f"Bearer {secret_value(traced.docs, ref['name'], ref['key'])}"}
    base = f"http://127.0.0.1:{traced.ports['gateway']}"
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        created = client.post("/v1/tasks", json={"type": "echo", "delay_s": 0.5})
        assert created.status_code == 201, created.text
        record = _poll(
            lambda: client.get(f"/v1/tasks/{created.json()['id']}").json(),
            lambda r: r["state"] == "succeeded",
            lambda: f"task success\n{traced.describe()}",
        )
    trace_id = record["traceparent"].split("-")[1]
    resources = _poll(
        lambda: _resources(jaeger.trace_document(trace_id) or {}),
        lambda found: {"taskforge-gateway", "taskforge-api", "taskforge-worker"} <= set(found),
        lambda: f"trace {trace_id} with gateway, api and worker spans\n{jaeger.describe()}",
    )

    def promote_resources() -> dict[str, dict[str, Any]]:
        found = jaeger.find_traces("taskforge-scheduler", "promote")
        return {k: v for i in found for k, v in _resources(jaeger.trace_document(i) or {}).items()}

    resources |= _poll(
        promote_resources,
        lambda found: "taskforge-scheduler" in found,
        lambda: f"promote span of the scheduler\n{jaeger.describe()}",
    )
    for service in SERVICES:
        attributes = resources[f"taskforge-{service}"]
        assert attributes["k8s.namespace.name"] == NAMESPACE, attributes
        assert attributes["k8s.pod.name"] == f"{service}-pod", attributes
        assert attributes["service.version"] == "0.1.0", attributes
        assert attributes["deployment.environment.name"] == "ci", attributes
        assert attributes["k8s.cluster.name"] == "local", attributes
