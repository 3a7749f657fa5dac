"""Contradictory or unsafe values stop `helm template` with a message that names the values
(templates/check-values.yaml and values.schema.json)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.helm import ADDON_APIS, render, render_error

CASES: list[tuple[str, dict[str, Any], tuple[str, ...], list[str]]] = [
    (
        "keda-and-worker-hpa",
        {"worker": {"keda": {"enabled": True}, "autoscaling": {"enabled": True}}},
        ADDON_APIS,
        ["worker.keda.enabled", "worker.autoscaling.enabled"],
    ),
    (
        "redis-without-password",
        {"redis": {"auth": {"enabled": False}}},
        ADDON_APIS,
        ["redis.auth.enabled=false is not allowed"],
    ),
    (
        "worker-grace-equal-to-shutdown-grace",
        {"worker": {"shutdownGraceSeconds": 30, "terminationGraceMarginSeconds": 0}},
        ADDON_APIS,
        ["terminationGracePeriodSeconds (30", "worker.shutdownGraceSeconds (30)"],
    ),
    (
        "worker-explicit-grace-below-shutdown-grace",
        {"worker": {"shutdownGraceSeconds": 60, "terminationGracePeriodSeconds": 45}},
        ADDON_APIS,
        ["terminationGracePeriodSeconds (45", "must exceed worker.shutdownGraceSeconds (60)"],
    ),
    (
        "heartbeat-above-half-the-lease",
        {"worker": {"leaseSeconds": 30, "heartbeatIntervalSeconds": 16}},
        ADDON_APIS,
        ["worker.heartbeatIntervalSeconds (16)", "half of worker.leaseSeconds (30)"],
    ),
    (
        "keda-with-external-redis-without-host",
        {"redis": {"enabled": False}, "worker": {"keda": {"enabled": True}}},
        ADDON_APIS,
        ["worker.keda.enabled=true with redis.enabled=false needs externalRedis.host"],
    ),
    (
        "external-redis-without-host",
        {"redis": {"enabled": False}, "externalRedis": {"existingSecret": "r"}},
        ADDON_APIS,
        ["redis.enabled=false needs externalRedis.host"],
    ),
    (
        "external-redis-without-password",
        {"redis": {"enabled": False}, "externalRedis": {"host": "redis.example"}},
        ADDON_APIS,
        ["needs a Redis password", "externalRedis.existingSecret", "externalRedis.password"],
    ),
    (
        "keda-without-its-crds",
        {"worker": {"keda": {"enabled": True}}},
        (),
        ["worker.keda.enabled=true but the cluster does not serve keda.sh/v1alpha1"],
    ),
    (
        "service-monitor-without-its-crds",
        {"metrics": {"serviceMonitor": {"enabled": True}}},
        ("keda.sh/v1alpha1",),
        ["metrics.serviceMonitor.enabled=true", "monitoring.coreos.com/v1"],
    ),
    (
        "pod-monitor-without-its-crds",
        {"metrics": {"podMonitor": {"enabled": True}}},
        (),
        ["metrics.podMonitor.enabled=true", "monitoring.coreos.com/v1"],
    ),
    (
        "prometheus-rule-without-its-crds",
        {"metrics": {"prometheusRule": {"enabled": True}}},
        (),
        ["metrics.prometheusRule.enabled=true", "monitoring.coreos.com/v1"],
    ),
    (
        "keda-min-above-max",
        {"worker": {"keda": {"enabled": True, "minReplicaCount": 5, "maxReplicaCount": 2}}},
        ADDON_APIS,
        ["worker.keda.minReplicaCount (5) is greater than worker.keda.maxReplicaCount (2)"],
    ),
    (
        "hpa-min-above-max",
        {"gateway": {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 3}}},
        ADDON_APIS,
        ["gateway.autoscaling.minReplicas (4) is greater than gateway.autoscaling.maxReplicas"],
    ),
    (
        "short-bootstrap-key",
        {"auth": {"bootstrapApiKey": {"value": "too-short"}}},
        ADDON_APIS,
        ["auth.bootstrapApiKey.value must be at least 24 characters"],
    ),
    (
        "short-internal-token",
        {"auth": {"internalToken": {"value": "too-short"}}},
        ADDON_APIS,
        ["auth.internalToken.value must be at least 24 characters"],
    ),
    (
        "helm-test-without-bootstrap-key",
        {"auth": {"bootstrapApiKey": {"enabled": False}}},
        ADDON_APIS,
        ["tests.enabled=true needs auth.bootstrapApiKey.enabled=true"],
    ),
    # values.schema.json: typos and out-of-range values fail before any template runs.
    ("misspelt-key", {"worker": {"concurency": 3}}, ADDON_APIS, ["'concurency' not allowed"]),
    ("bad-queue-name", {"worker": {"queues": ["a b"]}}, ADDON_APIS, ["/worker/queues/0"]),
    ("no-queue", {"worker": {"queues": []}}, ADDON_APIS, ["/worker/queues"]),
    ("zero-concurrency", {"worker": {"concurrency": 0}}, ADDON_APIS, ["/worker/concurrency"]),
    ("unknown-env", {"config": {"env": "staging"}}, ADDON_APIS, ["/config/env"]),
]


@pytest.mark.parametrize(
    ("values", "api_versions", "messages"),
    [pytest.param(values, apis, messages, id=name) for name, values, apis, messages in CASES],
)
def test_bad_values_fail_with_a_message_naming_them(
    values: dict[str, Any], api_versions: tuple[str, ...], messages: list[str]
) -> None:
    error = render_error(values, api_versions=api_versions)
    for message in messages:
        assert message in error, f"{message!r} not in:\n{error}"


def test_extra_api_versions_stand_in_for_a_cluster() -> None:
    values = {
        "worker": {"keda": {"enabled": True}},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "capabilities": {"extraApiVersions": list(ADDON_APIS)},
    }
    kinds = {d["kind"] for d in render(values, api_versions=())}
    assert {"ScaledObject", "TriggerAuthentication"} <= kinds


def test_the_margin_alone_derives_the_worker_grace_period() -> None:
    docs = render({"worker": {"shutdownGraceSeconds": 100, "terminationGraceMarginSeconds": 20}})
    (worker,) = [
        d for d in docs if d["metadata"]["name"] == "taskforge-worker" and d["kind"] == "Deployment"
    ]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
