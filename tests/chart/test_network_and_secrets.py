"""NetworkPolicies (who may talk to whom), credentials (generated, given or existing) and the
chart's Redis (password, persistence, queue-safe configuration, probes)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from taskforge.redisconf import TUNING
from tests.chart.helm import Doc, by_component, containers, find, one, pod_spec, render

#: Values with every generated credential in play (chart Redis, bootstrap key, KEDA).
KIND_WITH_KEDA: dict[str, Any] = {"worker": {"keda": {"enabled": True}}}

RELEASE_PODS = {"app.kubernetes.io/name": "taskforge", "app.kubernetes.io/instance": "taskforge"}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def policy(docs: list[Doc], name: str) -> dict[str, Any]:
    """The spec of the NetworkPolicy of component ``name``."""
    return dict(by_component(docs, "NetworkPolicy", name)["spec"])


def selector(name: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {**RELEASE_PODS, "app.kubernetes.io/component": name}}}


def test_network_policies_are_on_by_default_and_can_be_turned_off() -> None:
    names = {d["metadata"]["name"] for d in find(render({}), "NetworkPolicy")}
    assert names == {f"taskforge-{c}" for c in ("gateway", "api", "worker", "scheduler", "redis")}
    assert find(render({"networkPolicy": {"enabled": False}}), "NetworkPolicy") == []


def test_only_the_gateway_takes_outside_traffic() -> None:
    docs = render({})
    http, metrics = policy(docs, "gateway")["ingress"]
    assert "from" not in http and http["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert metrics == {"from": [MONITORING], "ports": [{"port": 9100, "protocol": "TCP"}]}
    allowed = [{"namespaceSelector": {"matchLabels": {"team": "edge"}}}]
    docs = render({"networkPolicy": {"gatewayAllowFrom": allowed}})
    assert policy(docs, "gateway")["ingress"][0]["from"] == allowed


def test_only_the_gateway_reaches_the_api() -> None:
    http, metrics = policy(render({}), "api")["ingress"]
    assert http == {"from": [selector("gateway")], "ports": [{"port": 8000, "protocol": "TCP"}]}
    assert metrics["from"] == [MONITORING]


@pytest.mark.parametrize(("name", "port"), [("worker", 9102), ("scheduler", 9103)])
def test_workers_and_schedulers_only_open_their_metrics_port(name: str, port: int) -> None:
    spec = policy(render({}), name)
    assert spec["ingress"] == [{"from": [MONITORING], "ports": [{"port": port, "protocol": "TCP"}]}]
    assert spec["policyTypes"] == ["Ingress"]


def test_only_taskforge_pods_and_keda_reach_redis() -> None:
    (rule,) = policy(render({}), "redis")["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": RELEASE_PODS}}]
    docs = render({"worker": {"keda": {"enabled": True}}, "redis": {"metrics": {"enabled": True}}})
    redis_rule, metrics = policy(docs, "redis")["ingress"]
    keda = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    assert redis_rule["from"] == [{"podSelector": {"matchLabels": RELEASE_PODS}}, keda]
    assert metrics["ports"] == [{"port": 9121, "protocol": "TCP"}]


def test_every_release_pod_may_reach_redis() -> None:
    docs = render({"worker": {"keda": {"enabled": True}}})
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert RELEASE_PODS.items() <= labels.items(), doc["metadata"]["name"]


def test_restricted_egress_allows_dns_redis_and_the_api_only() -> None:
    docs = render({"networkPolicy": {"restrictEgress": True}})
    gateway = policy(docs, "gateway")
    assert gateway["policyTypes"] == ["Ingress", "Egress"]
    dns, to_redis, to_api = gateway["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert to_redis["to"] == [selector("redis")]
    assert to_api == {"to": [selector("api")], "ports": [{"port": 8000, "protocol": "TCP"}]}
    assert len(policy(docs, "worker")["egress"]) == 2
    extra = {"ports": [{"port": 443, "protocol": "TCP"}]}
    docs = render({"networkPolicy": {"restrictEgress": True, "extraEgress": [extra]}})
    assert policy(docs, "worker")["egress"][-1] == extra


def _secret(docs: list[Doc], name: str, key: str) -> str:
    return base64.b64decode(one(docs, "Secret", name)["data"][key]).decode()


def _env_ref(docs: list[Doc], component: str, variable: str) -> dict[str, Any]:
    env = containers(by_component(docs, "Deployment", component))[0]["env"]
    (ref,) = [e["valueFrom"]["secretKeyRef"] for e in env if e["name"] == variable]
    return dict(ref)


def test_generated_credentials_are_long_and_distinct() -> None:
    docs = render({})
    values = {
        _secret(docs, "taskforge-redis", "redis-password"),
        _secret(docs, "taskforge-internal-token", "internal-token"),
        _secret(docs, "taskforge-bootstrap-key", "api-key"),
    }
    assert len(values) == 3
    assert all(len(v) >= 24 and v.isalnum() for v in values)


def test_given_credentials_are_used() -> None:
    given = {
        "auth": {
            "internalToken": {"value": "t" * 30},
            "bootstrapApiKey": {"value": "tfk_" + "b" * 30},
        },
        "redis": {"auth": {"password": "p" * 30}},
    }
    docs = render(given)
    assert _secret(docs, "taskforge-redis", "redis-password") == "p" * 30
    assert _secret(docs, "taskforge-internal-token", "internal-token") == "t" * 30
    assert _secret(docs, "taskforge-bootstrap-key", "api-key") == "tfk_" + "b" * 30


def _secret_checksums(docs: list[Doc]) -> dict[str, str]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/secrets"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }


def test_generated_credentials_do_not_change_the_pod_checksums_at_upgrade() -> None:
    """At install the credentials are generated; at upgrade `lookup` returns the stored ones.
    The pods' checksum/secrets must hash what the Secrets hold in both cases, or the first
    upgrade restarts every pod, Redis included (seen on the real cluster: make kube-test)."""
    installed = render(KIND_WITH_KEDA)
    stored = {
        "auth": {
            "internalToken": {
                "value": _secret(installed, "taskforge-internal-token", "internal-token")
            },
            "bootstrapApiKey": {"value": _secret(installed, "taskforge-bootstrap-key", "api-key")},
        },
        "redis": {"auth": {"password": _secret(installed, "taskforge-redis", "redis-password")}},
    }
    upgraded = render({**KIND_WITH_KEDA, **stored})
    assert _secret_checksums(upgraded) == _secret_checksums(installed)


@pytest.mark.parametrize(
    ("values", "component", "variable", "expected"),
    [
        (
            {"redis": {"auth": {"existingSecret": "r", "existingSecretPasswordKey": "pw"}}},
            "worker",
            "TASKFORGE_REDIS_PASSWORD",
            {"name": "r", "key": "pw"},
        ),
        (
            {"auth": {"internalToken": {"existingSecret": "t", "existingSecretKey": "tok"}}},
            "api",
            "TASKFORGE_INTERNAL_TOKEN",
            {"name": "t", "key": "tok"},
        ),
        (
            {"auth": {"bootstrapApiKey": {"existingSecret": "b", "existingSecretKey": "k"}}},
            "gateway",
            "TASKFORGE_BOOTSTRAP_API_KEY",
            {"name": "b", "key": "k"},
        ),
    ],
    ids=["redis", "internal-token", "bootstrap-key"],
)
def test_existing_secrets_replace_the_charts_own(
    values: dict[str, Any], component: str, variable: str, expected: dict[str, str]
) -> None:
    docs = render(values)
    assert _env_ref(docs, component, variable) == expected
    assert find(docs, "Secret", expected["name"]) == []
    own = {"r": "taskforge-redis", "t": "taskforge-internal-token", "b": "taskforge-bootstrap-key"}
    assert find(docs, "Secret", own[expected["name"]]) == []


def test_no_bootstrap_key_when_disabled() -> None:
    docs = render({"auth": {"bootstrapApiKey": {"enabled": False}}, "tests": {"enabled": False}})
    assert find(docs, "Secret", "taskforge-bootstrap-key") == []
    env = containers(by_component(docs, "Deployment", "gateway"))[0]["env"]
    assert "TASKFORGE_BOOTSTRAP_API_KEY" not in {e["name"] for e in env}


def test_handler_credentials_from_values_or_an_existing_secret() -> None:
    docs = render({"handlers": {"smtp": {"password": "p" * 20}}})
    assert one(docs, "Secret", "taskforge-handlers")["data"].keys() == {"smtp-password"}
    assert _env_ref(docs, "worker", "TASKFORGE_SMTP_PASSWORD")["name"] == "taskforge-handlers"
    docs = render({"handlers": {"existingSecret": "mail"}})
    assert find(docs, "Secret", "taskforge-handlers") == []
    for variable in (
        "TASKFORGE_WEBHOOK_SECRET",
        "TASKFORGE_SMTP_PASSWORD",
        "TASKFORGE_SMS_API_KEY",
    ):
        ref = _env_ref(docs, "api", variable)
        assert ref["name"] == "mail" and ref["optional"] is True


def test_redis_is_queue_safe_and_password_protected() -> None:
    docs = render({})
    conf = one(docs, "ConfigMap", "taskforge-redis")["data"]["redis.conf"].splitlines()
    assert "appendonly yes" in conf
    assert "maxmemory-policy noeviction" in conf
    assert 'save ""' in conf
    assert "dir /data" in conf
    # The tuning tests, the bench and the local stack run with (one source: taskforge.redisconf).
    for name, value in TUNING.items():
        assert f"{name} {value}" in conf
    redis = by_component(docs, "StatefulSet", "redis")
    container = containers(redis)[0]
    assert container["image"] == "redis:7.4.11-alpine"
    assert '--requirepass "$REDIS_PASSWORD"' in container["command"][-1]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert (
        env["REDIS_PASSWORD"]
        == env["REDISCLI_AUTH"]
        == {
            "name": "taskforge-redis",
            "key": "redis-password",
        }
    )
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "redis-cli -p 6379 ping" in container[probe]["exec"]["command"][-1]
    claim = redis["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert redis["spec"]["serviceName"] == "taskforge-redis-headless"


def test_redis_exporter_sidecar() -> None:
    docs = render({"redis": {"metrics": {"enabled": True}}})
    exporter = containers(by_component(docs, "StatefulSet", "redis"))[1]
    assert exporter["image"] == "oliver006/redis_exporter:v1.86.0"
    assert "--check-streams=tf:{*}:stream" in exporter["args"]
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/health"
    ports = one(docs, "Service", "taskforge-redis")["spec"]["ports"]
    assert [p["name"] for p in ports] == ["redis", "redis-metrics"]


def test_redis_without_persistence_uses_an_emptydir() -> None:
    docs = render({"redis": {"persistence": {"enabled": False}}})
    redis = by_component(docs, "StatefulSet", "redis")
    assert "volumeClaimTemplates" not in redis["spec"]
    volumes = {v["name"]: v for v in pod_spec(redis)["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_external_redis_renders_no_redis_objects() -> None:
    docs = render(
        {"redis": {"enabled": False}, "externalRedis": {"host": "r", "password": "x" * 30}}
    )
    assert not [
        d
        for d in docs
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "redis"
        and d["kind"] != "Secret"
    ]
    assert _secret(docs, "taskforge-redis", "redis-password") == "x" * 30


def test_ingress_routes_to_the_gateway_http_port() -> None:
    docs = render(
        {"gateway": {"ingress": {"enabled": True, "className": "nginx", "host": "t.example"}}}
    )
    ingress = one(docs, "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    (rule,) = ingress["rules"]
    assert rule["host"] == "t.example"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "taskforge-gateway", "port": {"name": "http"}}
