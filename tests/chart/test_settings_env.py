"""Every TASKFORGE_* variable the chart gives a service is a field of that service's settings
model, every required field is set, and the resolved environment loads without error."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import pytest
from pydantic_settings import BaseSettings

from scripts.chart_launch import resolve_env
from taskforge.settings import (
    ApiSettings,
    GatewaySettings,
    SchedulerSettings,
    WorkerSettings,
    load_settings,
)
from tests.chart.helm import VALUES_FILES, Doc, by_component, containers, find, render
from tests.chart.test_manifests import EVERYTHING

SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "api": ApiSettings,
    "worker": WorkerSettings,
    "scheduler": SchedulerSettings,
}

#: Handler credentials and an SMTP login, so the optional variables are rendered too.
WITH_HANDLER_SECRETS: dict[str, Any] = {
    "handlers": {
        "modules": ["tests.support.task_handlers", "taskforge.handlers.builtin"],
        "webhook": {"secret": "w" * 32},
        "smtp": {"username": "mailer", "password": "p" * 32},
        "sms": {"baseUrl": "https://sms.example.com", "apiKey": "k" * 32, "from": "TaskForge"},
    }
}

SCENARIOS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, ()),
    "everything": (EVERYTHING, ()),
    "handler-secrets": (WITH_HANDLER_SECRETS, ()),
    **{name.rsplit("/", 1)[-1]: ({}, (name,)) for name in VALUES_FILES},
}

#: Stand-in for secrets held in existing Secrets the chart does not render.
EXISTING_SECRET_VALUE = "s3cr3t-from-an-existing-secret-0123456789"


def _existing_secret(name: str, key: str) -> str:
    return EXISTING_SECRET_VALUE


def _container(docs: list[Doc], service: str) -> Doc:
    return containers(by_component(docs, "Deployment", service))[0]


def _declared_names(docs: list[Doc], container: Doc) -> set[str]:
    """Names the chart sets: ConfigMap keys of envFrom and env entries."""
    names = {var["name"] for var in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        (obj,) = find(docs, kind, ref["name"])
        names |= set(obj.get("data", {}))
    return names


@pytest.fixture(params=sorted(SCENARIOS), scope="module")
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    """The objects of one scenario."""
    values, files = SCENARIOS[request.param]
    return render(values, files=files)


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_variable_is_a_field_of_the_service_settings(docs: list[Doc], service: str) -> None:
    fields = {f"TASKFORGE_{name.upper()}" for name in SETTINGS[service].model_fields}
    declared = {n for n in _declared_names(docs, _container(docs, service)) if "TASKFORGE_" in n}
    assert declared, service
    assert declared <= fields, f"{service}: not settings of its own: {sorted(declared - fields)}"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_required_field_is_set(docs: list[Doc], service: str) -> None:
    required = {
        f"TASKFORGE_{name.upper()}"
        for name, info in SETTINGS[service].model_fields.items()
        if info.is_required()
    }
    declared = _declared_names(docs, _container(docs, service))
    assert required <= declared, f"{service}: required but unset: {sorted(required - declared)}"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_the_rendered_environment_loads(docs: list[Doc], service: str) -> None:
    env = resolve_env(docs, _container(docs, service), _existing_secret)
    with mock.patch.dict(os.environ, env, clear=True):
        settings = load_settings(SETTINGS[service])
    assert settings.redis_password is not None, f"{service} would talk to Redis without a password"
    assert settings.metrics_host == "0.0.0.0"
    if service in ("gateway", "api"):
        assert settings.host == "0.0.0.0"  # type: ignore[attr-defined]


def test_queues_and_concurrency_reach_the_worker() -> None:
    docs = render({"worker": {"queues": ["critical", "default", "bulk"], "concurrency": 12}})
    env = resolve_env(docs, _container(docs, "worker"))
    with mock.patch.dict(os.environ, env, clear=True):
        settings = load_settings(WorkerSettings)
    assert settings.queues == ["critical", "default", "bulk"]
    assert settings.concurrency == 12


def test_handler_modules_reach_the_worker_and_the_api() -> None:
    docs = render(WITH_HANDLER_SECRETS)
    modules = WITH_HANDLER_SECRETS["handlers"]["modules"]
    for service, cls in (("worker", WorkerSettings), ("api", ApiSettings)):
        env = resolve_env(docs, _container(docs, service))
        with mock.patch.dict(os.environ, env, clear=True):
            settings = load_settings(cls)
        assert settings.handlers == modules, service  # type: ignore[attr-defined]
        assert settings.smtp_password is not None, service  # type: ignore[attr-defined]
        assert settings.webhook_secret is not None, service  # type: ignore[attr-defined]
        assert settings.sms_api_key is not None, service  # type: ignore[attr-defined]


def test_services_share_one_internal_token_and_one_redis() -> None:
    docs = render({})
    envs = {s: resolve_env(docs, _container(docs, s)) for s in SETTINGS}
    assert envs["gateway"]["TASKFORGE_INTERNAL_TOKEN"] == envs["api"]["TASKFORGE_INTERNAL_TOKEN"]
    assert len({e["TASKFORGE_REDIS_URL"] for e in envs.values()}) == 1
    assert len({e["TASKFORGE_REDIS_PASSWORD"] for e in envs.values()}) == 1
    assert envs["gateway"]["TASKFORGE_API_URL"] == "http://taskforge-api:8000"
    assert envs["worker"]["TASKFORGE_REDIS_URL"] == "redis://taskforge-redis:6379/0"
    assert len(envs["gateway"]["TASKFORGE_BOOTSTRAP_API_KEY"]) >= 24
    ports = {s: envs[s]["TASKFORGE_METRICS_PORT"] for s in SETTINGS}
    assert ports == {"gateway": "9100", "api": "9101", "worker": "9102", "scheduler": "9103"}


def test_egress_allow_lists_and_queue_bounds_reach_the_services() -> None:
    docs = render(
        {
            "handlers": {
                "egress": {"allowCidrs": ["10.0.0.0/8"], "allowHosts": ["*.svc.cluster.local"]},
                "webhook": {"resultBodyChars": 200},
            },
            "config": {"maxQueues": 50, "queuePattern": "tenant-[a-z]+|default"},
            "scheduler": {"queueIdleTtlSeconds": 600},
        }
    )
    for service, cls in (("worker", WorkerSettings), ("api", ApiSettings)):
        env = resolve_env(docs, _container(docs, service))
        with mock.patch.dict(os.environ, env, clear=True):
            settings = load_settings(cls)
        assert [str(n) for n in settings.http_allow_cidrs] == ["10.0.0.0/8"], service  # type: ignore[attr-defined]
        assert settings.http_result_body_chars == 200, service  # type: ignore[attr-defined]
        assert settings.max_queues == 50 and settings.queue_pattern == "tenant-[a-z]+|default"
    env = resolve_env(docs, _container(docs, "scheduler"))
    with mock.patch.dict(os.environ, env, clear=True):
        scheduler = load_settings(SchedulerSettings)
    assert scheduler.queue_idle_ttl_s == 600 and scheduler.max_queues == 50
