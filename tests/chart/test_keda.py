"""The worker's KEDA ScaledObject (docs/conventions.md#keda): off by default, every option
rendered, the target and the triggers pointing at exactly what the chart and the workers use, the
lag KEDA would read checked against a real Redis, and the objects validated against the KEDA CRD
schema."""

from __future__ import annotations

import math
import os
import subprocess
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from scripts.chart_launch import local_argv, resolve_env
from taskforge.broker.connection import Broker
from taskforge.broker.consume import fetch
from taskforge.broker.enqueue import enqueue_many
from taskforge.keys import CONSUMER_GROUP, QueueKeys
from taskforge.models import TaskSpec
from tests.chart.helm import (
    KUBECONFORM,
    SCHEMA_CACHE,
    Doc,
    by_component,
    containers,
    one,
    render,
    render_text,
)

SCALED_OBJECT = "templates/worker/worker-scaledobject.yaml"
TRIGGER_AUTH = "templates/worker/worker-triggerauthentication.yaml"
GROUPS_JOB = "templates/worker/worker-consumer-groups-job.yaml"
KEDA_ON: dict[str, Any] = {"worker": {"keda": {"enabled": True}}}


def keda_values(**keda: Any) -> dict[str, Any]:
    """Values with KEDA on and ``keda`` merged into worker.keda."""
    return {"worker": {"keda": {"enabled": True, **keda}}}


def scaled_object(values: dict[str, Any]) -> Doc:
    """The ScaledObject rendered alone (--show-only)."""
    (doc,) = render(values, show_only=(SCALED_OBJECT,))
    return doc


def worker_env(docs: list[Doc]) -> dict[str, str]:
    """The worker container's environment as Kubernetes would set it (existing Secrets faked)."""
    worker = containers(by_component(docs, "Deployment", "worker"))[0]
    return resolve_env(docs, worker, lambda name, key: f"<{name}/{key}>")


@pytest.mark.parametrize("template", [SCALED_OBJECT, TRIGGER_AUTH, GROUPS_JOB])
def test_nothing_is_rendered_by_default(template: str) -> None:
    assert render({}, show_only=(template,)) == []


def test_no_keda_object_without_the_switch_even_with_the_api() -> None:
    kinds = {d["kind"] for d in render({})}
    assert not kinds & {"ScaledObject", "TriggerAuthentication", "Job"}


@pytest.mark.parametrize(
    ("option", "value", "field"),
    [
        ("pollingInterval", 17, "pollingInterval"),
        ("cooldownPeriod", 123, "cooldownPeriod"),
        ("initialCooldownPeriod", 45, "initialCooldownPeriod"),
        ("minReplicaCount", 2, "minReplicaCount"),
        ("maxReplicaCount", 33, "maxReplicaCount"),
    ],
)
def test_scalar_options_reach_the_spec(option: str, value: int, field: str) -> None:
    assert scaled_object(keda_values(**{option: value}))["spec"][field] == value


def test_the_defaults() -> None:
    spec = scaled_object(KEDA_ON)["spec"]
    assert spec["pollingInterval"] == 5
    assert spec["cooldownPeriod"] == 60
    assert spec["minReplicaCount"] == 0
    assert spec["maxReplicaCount"] == 10
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 1}
    assert "advanced" not in spec


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        ({"enabled": False}, None),
        ({"failureThreshold": 7, "replicas": 4}, {"failureThreshold": 7, "replicas": 4}),
    ],
)
def test_fallback(fallback: dict[str, Any], expected: dict[str, int] | None) -> None:
    assert scaled_object(keda_values(fallback=fallback))["spec"].get("fallback") == expected


def test_advanced_is_passed_through_verbatim() -> None:
    advanced = {
        "horizontalPodAutoscalerConfig": {
            "name": "workers-hpa",
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            },
        },
        "restoreToOriginalReplicaCount": True,
    }
    assert scaled_object(keda_values(advanced=advanced))["spec"]["advanced"] == advanced


def test_extra_triggers_are_appended() -> None:
    cron = {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": "2"}
    extra = [{"type": "cron", "metadata": cron}]
    triggers = scaled_object(keda_values(extraTriggers=extra))["spec"]["triggers"]
    assert triggers[-1] == extra[0]
    assert len(triggers) == 3


@pytest.mark.parametrize("activation", [0, 9])
def test_activation_applies_to_the_backlog_triggers_only(activation: int) -> None:
    triggers = scaled_object(keda_values(activationLagCount=activation))["spec"]["triggers"]
    backlog, inflight = triggers
    assert backlog["metadata"]["activationLagCount"] == str(activation)
    # Any running task keeps workers up: the in-flight trigger activates on a single entry.
    assert "activationLagCount" not in inflight["metadata"]


@pytest.mark.parametrize("concurrency", [1, 5, 32])
def test_targets_are_the_worker_concurrency(concurrency: int) -> None:
    docs = render({"worker": {"concurrency": concurrency, "keda": {"enabled": True}}})
    spec = one(docs, "ScaledObject")["spec"]
    assert worker_env(docs)["TASKFORGE_CONCURRENCY"] == str(concurrency)
    for trigger in spec["triggers"]:
        target = trigger["metadata"].get("lagCount") or trigger["metadata"]["pendingEntriesCount"]
        assert target == str(concurrency), trigger["name"]


@pytest.mark.parametrize("queues", [["default"], ["critical", "default", "bulk"]])
def test_two_triggers_per_queue_on_the_stream_and_group_the_workers_read(
    queues: list[str],
) -> None:
    docs = render({"worker": {"queues": queues, "keda": {"enabled": True}}})
    triggers = one(docs, "ScaledObject")["spec"]["triggers"]
    assert worker_env(docs)["TASKFORGE_QUEUES"] == ",".join(queues)
    assert [t["name"] for t in triggers] == [
        name for q in queues for name in (f"backlog-{q}", f"inflight-{q}")
    ]
    for trigger in triggers:
        queue = trigger["name"].split("-", 1)[1]
        assert trigger["type"] == "redis-streams"
        assert trigger["metadata"]["stream"] == QueueKeys(queue).stream
        assert trigger["metadata"]["consumerGroup"] == CONSUMER_GROUP
    backlog = [t for t in triggers if t["name"].startswith("backlog-")]
    inflight = [t for t in triggers if t["name"].startswith("inflight-")]
    assert all("lagCount" in t["metadata"] for t in backlog)
    assert all("pendingEntriesCount" in t["metadata"] for t in inflight)
    assert all("lagCount" not in t["metadata"] for t in inflight)


def test_the_target_and_authentication_are_the_rendered_objects() -> None:
    docs = render(KEDA_ON)
    spec = one(docs, "ScaledObject")["spec"]
    worker = by_component(docs, "Deployment", "worker")
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": worker["metadata"]["name"],
        "envSourceContainerName": "worker",
    }
    assert "replicas" not in worker["spec"]
    auth = one(docs, "TriggerAuthentication")
    assert {t["authenticationRef"]["name"] for t in spec["triggers"]} == {auth["metadata"]["name"]}
    (password,) = [
        e["valueFrom"]["secretKeyRef"]
        for e in containers(worker)[0]["env"]
        if e["name"] == "TASKFORGE_REDIS_PASSWORD"
    ]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": password["name"], "key": password["key"]}
    ]
    one(docs, "Secret", password["name"])  # the chart renders the Secret KEDA reads


@pytest.mark.parametrize(
    ("values", "address", "keda_address", "database", "tls"),
    [
        # The operator runs in the keda namespace: the short Service name would not resolve.
        (KEDA_ON, "taskforge-redis:6379", "taskforge-redis.taskforge.svc:6379", "0", False),
        (
            {
                **keda_values(),
                "redis": {"enabled": False},
                "externalRedis": {
                    "host": "redis.example.internal",
                    "port": 6380,
                    "database": 3,
                    "tls": True,
                    "existingSecret": "managed-redis",
                    "existingSecretPasswordKey": "password",
                },
            },
            "redis.example.internal:6380",
            "redis.example.internal:6380",
            "3",
            True,
        ),
    ],
    ids=["chart-redis", "external-redis"],
)
def test_triggers_connect_where_the_workers_connect(
    values: dict[str, Any], address: str, keda_address: str, database: str, tls: bool
) -> None:
    docs = render(values)
    url = worker_env(docs)["TASKFORGE_REDIS_URL"]
    assert url == f"{'rediss' if tls else 'redis'}://{address}/{database}"
    for trigger in one(docs, "ScaledObject")["spec"]["triggers"]:
        assert trigger["metadata"]["address"] == keda_address
        assert trigger["metadata"]["databaseIndex"] == database
        assert trigger["metadata"].get("enableTLS") == ("true" if tls else None)
    if not values.get("redis", {}).get("enabled", True):
        ref = one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"][0]
        assert (ref["name"], ref["key"]) == ("managed-redis", "password")


def test_the_keda_address_follows_the_release_namespace() -> None:
    triggers = one(render(KEDA_ON, namespace="tasks-b"), "ScaledObject")["spec"]["triggers"]
    assert {t["metadata"]["address"] for t in triggers} == {"taskforge-redis.tasks-b.svc:6379"}


def test_the_consumer_group_job_is_a_post_install_hook() -> None:
    docs = render(KEDA_ON)
    job = one(docs, "Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"post-install", "post-upgrade"}
    assert (
        containers(job)[0]["envFrom"]
        == containers(by_component(docs, "Deployment", "worker"))[0]["envFrom"]
    )
    assert render(keda_values(createConsumerGroups=False), show_only=(GROUPS_JOB,)) == []


def _run_consumer_group_job(docs: list[Doc], redis_url: str) -> subprocess.CompletedProcess[str]:
    """Run the hook Job's command here, with its rendered env pointed at the test Redis."""
    container = containers(one(docs, "Job"))[0]
    env = resolve_env(docs, container)
    env["TASKFORGE_REDIS_URL"] = redis_url
    env.pop("TASKFORGE_REDIS_PASSWORD")  # the session Redis has no password
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    return subprocess.run(
        local_argv(container),
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _group(client: Redis, stream: str, group: str) -> dict[str, Any]:
    """The consumer group's XINFO GROUPS entry, as KEDA's lag mode reads it."""
    groups = await client.xinfo_groups(stream)
    (found,) = [g for g in groups if g["name"] in (group, group.encode())]
    return dict(found)


async def test_lag_and_pending_are_what_keda_reads(
    redis_url: str, redis_client: Redis, queue_name: str
) -> None:
    concurrency, activation = 4, 2
    docs = render(
        {
            "worker": {
                "queues": [queue_name],
                "concurrency": concurrency,
                "keda": {"enabled": True, "activationLagCount": activation},
            }
        }
    )
    backlog, inflight = one(docs, "ScaledObject")["spec"]["triggers"]
    stream, group = backlog["metadata"]["stream"], backlog["metadata"]["consumerGroup"]
    assert (stream, group) == (
        inflight["metadata"]["stream"],
        inflight["metadata"]["consumerGroup"],
    )
    lag_target = int(backlog["metadata"]["lagCount"])
    pending_target = int(inflight["metadata"]["pendingEntriesCount"])

    # Before any task: the hook Job creates the group, so XPENDING (the in-flight trigger)
    # answers 0 instead of NOGROUP, and the lag is 0.
    assert not await redis_client.exists(stream)
    job = _run_consumer_group_job(docs, redis_url)
    assert job.returncode == 0, job.stdout + job.stderr
    assert (await _group(redis_client, stream, group))["lag"] == 0
    assert (await redis_client.xpending(stream, group))["pending"] == 0

    broker = Broker.from_url(redis_url)
    try:
        specs = [TaskSpec(type="echo", queue=queue_name, payload={"n": n}) for n in range(10)]
        await enqueue_many(
            broker,
            specs,
            now_ms=int(time.time() * 1000),
            idempotency_ttl_s=60,
            max_payload_bytes=1 << 20,
        )
        lag = (await _group(redis_client, stream, group))["lag"]
        assert lag == 10
        assert lag > int(backlog["metadata"]["activationLagCount"])  # wakes workers from zero
        assert math.ceil(lag / lag_target) == 3  # pods the backlog trigger asks for

        started, _, _ = await fetch(broker, queue_name, "worker-a", concurrency, lease_ms=30_000)
        assert len(started) == concurrency
        lag = (await _group(redis_client, stream, group))["lag"]
        pending = (await redis_client.xpending(stream, group))["pending"]
        assert (lag, pending) == (10 - concurrency, concurrency)
        assert max(math.ceil(lag / lag_target), math.ceil(pending / pending_target)) == 2
    finally:
        await broker.close()


def _kubeconform(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(KUBECONFORM),
            "-strict",
            "-summary",
            "-schema-location",
            f"{SCHEMA_CACHE}/crds/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json",
            "-",
        ],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


KUBECONFORM_CASES = [
    KEDA_ON,
    keda_values(
        pollingInterval=10,
        cooldownPeriod=300,
        initialCooldownPeriod=30,
        minReplicaCount=1,
        maxReplicaCount=50,
        activationLagCount=5,
        fallback={"failureThreshold": 5, "replicas": 2},
        advanced={
            "horizontalPodAutoscalerConfig": {
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
            }
        },
        extraTriggers=[
            {
                "type": "cron",
                "metadata": {
                    "timezone": "UTC",
                    "start": "0 8 * * *",
                    "end": "0 18 * * *",
                    "desiredReplicas": "2",
                },
            }
        ],
    ),
    keda_values(fallback={"enabled": False}),
    {**keda_values(), "worker": {"queues": ["a", "b", "c"], "keda": {"enabled": True}}},
]


@pytest.mark.parametrize(
    "values", KUBECONFORM_CASES, ids=["defaults", "all-options", "no-fallback", "three-queues"]
)
def test_keda_objects_validate_against_the_keda_crd_schema(values: dict[str, Any]) -> None:
    text = render_text(values, show_only=(SCALED_OBJECT, TRIGGER_AUTH))
    result = _kubeconform(text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid: 2, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def test_kubeconform_refuses_a_misspelt_scaledobject_field() -> None:
    text = render_text(KEDA_ON, show_only=(SCALED_OBJECT,)).replace(
        "pollingInterval:", "pollingIntervall:"
    )
    result = _kubeconform(text)
    assert result.returncode != 0
    assert "pollingIntervall" in result.stdout
