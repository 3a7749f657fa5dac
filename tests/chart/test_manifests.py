"""The rendered manifests of every supported scenario: labels, selectors, probes, resources,
security contexts, volumes and rollout checksums."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.chart.helm import (
    VALUES_FILES,
    WORKLOAD_KINDS,
    Doc,
    by_component,
    component,
    containers,
    find,
    one,
    pod_objects,
    pod_spec,
    render,
)

#: Every feature switched on at once (KEDA, monitoring, exporter, ingress, HPAs, egress rules).
EVERYTHING: dict[str, Any] = {
    "worker": {"keda": {"enabled": True}, "queues": ["critical", "default"]},
    "gateway": {"ingress": {"enabled": True}, "autoscaling": {"enabled": True}},
    "api": {"autoscaling": {"enabled": True}},
    "redis": {"metrics": {"enabled": True}},
    "networkPolicy": {"restrictEgress": True},
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
}

SCENARIOS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "everything": (EVERYTHING, ()),
    **{name.rsplit("/", 1)[-1]: ({}, (name,)) for name in VALUES_FILES},
}

STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
SELECTOR_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
}
SERVICES = ("gateway", "api", "worker", "scheduler")


@pytest.fixture(params=sorted(SCENARIOS), scope="module")
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    """The objects of one scenario."""
    values, files = SCENARIOS[request.param]
    return render(values, files=files)


def walk(node: Any, key: str) -> Iterator[Any]:
    """Every value stored under ``key`` anywhere in ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def test_every_object_has_the_standard_labels(docs: list[Doc]) -> None:
    for doc in docs:
        labels = doc["metadata"]["labels"]
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{doc['kind']} {doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == "taskforge"


def test_selectors_carry_only_stable_labels(docs: list[Doc]) -> None:
    for doc in docs:
        for match_labels in walk(doc, "matchLabels"):
            assert "helm.sh/chart" not in match_labels, doc["metadata"]["name"]
            assert "app.kubernetes.io/version" not in match_labels, doc["metadata"]["name"]
        if doc["kind"] in (*WORKLOAD_KINDS, "PodDisruptionBudget"):
            selector = set(doc["spec"]["selector"]["matchLabels"])
            assert selector == SELECTOR_LABELS, doc["metadata"]["name"]


def test_workload_selectors_match_their_pod_labels(docs: list[Doc]) -> None:
    for doc in find(docs, "Deployment") + find(docs, "StatefulSet"):
        selector = doc["spec"]["selector"]["matchLabels"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), doc["metadata"]["name"]
        assert labels["app.kubernetes.io/component"] == component(doc)


def test_each_service_has_its_own_component(docs: list[Doc]) -> None:
    for name in SERVICES:
        deployment = by_component(docs, "Deployment", name)
        assert deployment["metadata"]["name"] == f"taskforge-{name}"
        assert [c["name"] for c in containers(deployment)] == [name]
        assert containers(deployment)[0]["command"] == [f"taskforge-{name}"]


def _pod_labels(docs: list[Doc]) -> list[dict[str, str]]:
    return [
        d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] in WORKLOAD_KINDS
    ]


def test_services_and_pdbs_select_pods_with_the_named_ports(docs: list[Doc]) -> None:
    pods = {d["metadata"]["name"]: d for d in docs if d["kind"] in WORKLOAD_KINDS}
    for service in find(docs, "Service"):
        selector = service["spec"]["selector"]
        backing = [
            p
            for p in pods.values()
            if selector.items() <= p["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(backing) == 1, f"Service {service['metadata']['name']} selects {len(backing)}"
        port_names = {p["name"] for c in containers(backing[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)
    for pdb in find(docs, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in _pod_labels(docs))
        assert "minAvailable" not in pdb["spec"]


def test_every_long_running_container_has_probes_and_resources(docs: list[Doc]) -> None:
    for doc in docs:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        for container in containers(doc):
            where = f"{doc['metadata']['name']}/{container['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{where} has no {probe}"
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], where
            assert resources["limits"]["memory"], where


def test_service_probes_use_the_metrics_port(docs: list[Doc]) -> None:
    for name in SERVICES:
        container = containers(by_component(docs, "Deployment", name))[0]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_every_pod_and_container_is_hardened(docs: list[Doc]) -> None:
    for doc in pod_objects(docs):
        spec = pod_spec(doc)
        pod = spec["securityContext"]
        where = doc["metadata"]["name"]
        assert pod["runAsNonRoot"] is True, where
        for field in ("runAsUser", "runAsGroup", "fsGroup"):
            assert isinstance(pod[field], int) and pod[field] > 0, (where, field)
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["enableServiceLinks"] is False, where
        for container in containers(doc):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (where, container["name"])
            assert sc["readOnlyRootFilesystem"] is True, (where, container["name"])
            assert sc["privileged"] is False, (where, container["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (where, container["name"])
            assert "add" not in sc["capabilities"], (where, container["name"])
            assert container["resources"]["limits"]["memory"], (where, container["name"])


def test_every_container_gets_a_writable_tmp(docs: list[Doc]) -> None:
    for doc in pod_objects(docs):
        volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
        assert "emptyDir" in volumes["tmp"], doc["metadata"]["name"]
        for container in containers(doc):
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") == "tmp", (doc["metadata"]["name"], container["name"])


def test_images_are_pinned(docs: list[Doc]) -> None:
    for doc in pod_objects(docs):
        for container in containers(doc):
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], image
            assert not image.endswith((":latest", ":")), image
            assert container["imagePullPolicy"] in ("IfNotPresent", "Always", "Never")


def test_the_worker_grace_period_exceeds_its_shutdown_grace(docs: list[Doc]) -> None:
    worker = by_component(docs, "Deployment", "worker")
    config = one(docs, "ConfigMap", "taskforge-worker")["data"]
    grace = float(config["TASKFORGE_SHUTDOWN_GRACE_S"])
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > grace


def test_pods_roll_when_their_config_or_secrets_change(docs: list[Doc]) -> None:
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            annotations = doc["spec"]["template"]["metadata"]["annotations"]
            assert len(annotations["checksum/config"]) == 64, doc["metadata"]["name"]
            assert len(annotations["checksum/secrets"]) == 64, doc["metadata"]["name"]


def _checksums(values: dict[str, Any]) -> dict[str, str]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for d in render(values)
        if d["kind"] in WORKLOAD_KINDS
    }


@pytest.mark.parametrize(
    ("values", "changed"),
    [
        ({"worker": {"concurrency": 7}}, {"taskforge-worker"}),
        ({"gateway": {"defaultBurst": 7}}, {"taskforge-gateway"}),
        ({"scheduler": {"tickSeconds": 2}}, {"taskforge-scheduler"}),
        ({"api": {"maxBatchSize": 7}}, {"taskforge-api"}),
        ({"redis": {"maxmemory": "300mb"}}, {"taskforge-redis"}),
        (
            {"config": {"logLevel": "DEBUG"}},
            {"taskforge-gateway", "taskforge-api", "taskforge-worker", "taskforge-scheduler"},
        ),
    ],
)
def test_a_config_change_rolls_exactly_the_pods_that_read_it(
    values: dict[str, Any], changed: set[str]
) -> None:
    before, after = _checksums({}), _checksums(values)
    assert {name for name in before if before[name] != after[name]} == changed


def test_replicas_are_left_to_the_autoscalers() -> None:
    plain = {d["metadata"]["name"]: d for d in render({}) if d["kind"] == "Deployment"}
    assert all("replicas" in d["spec"] for d in plain.values())
    scaled = render(
        {
            "gateway": {"autoscaling": {"enabled": True}},
            "api": {"autoscaling": {"enabled": True}},
            "worker": {"keda": {"enabled": True}},
        }
    )
    for name in ("gateway", "api", "worker"):
        assert "replicas" not in by_component(scaled, "Deployment", name)["spec"], name
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in find(scaled, "HorizontalPodAutoscaler")}
    assert hpas == {"taskforge-gateway", "taskforge-api"}
    assert (
        "replicas"
        not in by_component(
            render({"worker": {"autoscaling": {"enabled": True}}}), "Deployment", "worker"
        )["spec"]
    )


def test_topology_spread_gets_the_component_selector() -> None:
    constraint = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname"}
    docs = render({"worker": {"topologySpreadConstraints": [constraint]}})
    spread = pod_spec(by_component(docs, "Deployment", "worker"))["topologySpreadConstraints"]
    assert spread == [
        {
            **constraint,
            "labelSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "taskforge",
                    "app.kubernetes.io/instance": "taskforge",
                    "app.kubernetes.io/component": "worker",
                }
            },
        }
    ]
