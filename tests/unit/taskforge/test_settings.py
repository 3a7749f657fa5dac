"""Tests for taskforge.settings: fail-closed loading from TASKFORGE_* variables."""

from __future__ import annotations

import os

import pytest

from taskforge.errors import ConfigurationError
from taskforge.models import BackoffPolicy
from taskforge.settings import (
    ApiSettings,
    GatewaySettings,
    HandlerSettings,
    SchedulerSettings,
    WorkerSettings,
    load_settings,
)
from taskforge.settings.base import known_variables

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TASKFORGE_* variable from the outer environment, then the one required one."""
    for name in list(os.environ):
        if name.upper().startswith("TASKFORGE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKFORGE_REDIS_URL", REDIS_URL)
    return monkeypatch


def test_minimal_environment_loads_defaults() -> None:
    settings = load_settings(WorkerSettings)
    assert settings.redis_url == REDIS_URL
    assert settings.env == "prod"
    assert settings.queues == ["default"]
    assert settings.fetch_batch == settings.concurrency


def test_unknown_variable_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_FOO", "1")
    with pytest.raises(ConfigurationError, match="TASKFORGE_FOO"):
        load_settings(WorkerSettings)


def test_all_unknown_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_CONCURRENCYY", "4")
    monkeypatch.setenv("TASKFORGE_QUEUE", "a")
    with pytest.raises(ConfigurationError) as exc:
        load_settings(WorkerSettings)
    assert "TASKFORGE_CONCURRENCYY" in str(exc.value)
    assert "TASKFORGE_QUEUE" in str(exc.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASKFORGE_CONCURRENCY", "abc"),
        ("TASKFORGE_CONCURRENCY", "0"),
        ("TASKFORGE_LEASE_S", "0.1"),
        ("TASKFORGE_MAX_RETRIES", "-1"),
        ("TASKFORGE_ENV", "staging"),
        ("TASKFORGE_LOG_LEVEL", "TRACE"),
        ("TASKFORGE_BACKOFF_KIND", "linear"),
        ("TASKFORGE_METRICS_PORT", "70000"),
        ("TASKFORGE_BACKOFF_JITTER", "maybe"),
    ],
)
def test_invalid_value_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(WorkerSettings)


def test_missing_redis_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFORGE_REDIS_URL")
    with pytest.raises(ConfigurationError, match="TASKFORGE_REDIS_URL"):
        load_settings(WorkerSettings)


@pytest.mark.parametrize("placeholder", ["changeme", "CHANGEME", "secret", "password", "dev", ""])
def test_placeholder_secret_refused_in_prod(
    monkeypatch: pytest.MonkeyPatch, placeholder: str
) -> None:
    monkeypatch.setenv("TASKFORGE_WEBHOOK_SECRET", placeholder)
    with pytest.raises(ConfigurationError, match="TASKFORGE_WEBHOOK_SECRET"):
        load_settings(WorkerSettings)


def test_placeholder_secret_accepted_in_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_WEBHOOK_SECRET", "changeme")
    monkeypatch.setenv("TASKFORGE_ENV", "dev")
    settings = load_settings(WorkerSettings)
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == "changeme"


def test_real_secret_accepted_in_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_WEBHOOK_SECRET", "s3cr3t-with-entropy-9f2c")
    settings = load_settings(WorkerSettings)
    assert settings.webhook_secret is not None
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("cls", "variable"),
    [
        (ApiSettings, "TASKFORGE_INTERNAL_TOKEN"),
        (GatewaySettings, "TASKFORGE_INTERNAL_TOKEN"),
        (WorkerSettings, "TASKFORGE_REDIS_PASSWORD"),
        (WorkerSettings, "TASKFORGE_SMTP_PASSWORD"),
        (WorkerSettings, "TASKFORGE_SMS_API_KEY"),
    ],
)
def test_every_secret_field_is_checked_for_placeholders(
    monkeypatch: pytest.MonkeyPatch, cls: type, variable: str
) -> None:
    monkeypatch.setenv("TASKFORGE_INTERNAL_TOKEN", "a-real-token-7c1e")
    monkeypatch.setenv("TASKFORGE_API_URL", "http://api:8000")
    monkeypatch.setenv(variable, "changeme")
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(cls)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a, b", ["a", "b"]),
        ("a,b", ["a", "b"]),
        ("  emails ,, sms ,", ["emails", "sms"]),
        ("single", ["single"]),
    ],
)
def test_queues_parse_from_csv(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("TASKFORGE_QUEUES", value)
    assert load_settings(WorkerSettings).queues == expected


@pytest.mark.parametrize("value", ["a b", "a.b", "{q}", "ok,bad name", ",", ""])
def test_invalid_queues_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TASKFORGE_QUEUES", value)
    with pytest.raises(ConfigurationError, match="TASKFORGE_QUEUES"):
        load_settings(WorkerSettings)


def test_handlers_parse_from_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_HANDLERS", "my.mod, other.mod:thing")
    assert load_settings(WorkerSettings).handlers == ["my.mod", "other.mod:thing"]


@pytest.mark.parametrize(
    ("lease_s", "heartbeat_s", "ok"),
    [
        ("30", "10", True),
        ("30", "15", True),  # exactly half
        ("30", "15.01", False),
        ("10", "6", False),
        ("1", "0.5", True),
    ],
)
def test_heartbeat_must_fit_twice_in_the_lease(
    monkeypatch: pytest.MonkeyPatch, lease_s: str, heartbeat_s: str, ok: bool
) -> None:
    monkeypatch.setenv("TASKFORGE_LEASE_S", lease_s)
    monkeypatch.setenv("TASKFORGE_HEARTBEAT_INTERVAL_S", heartbeat_s)
    if ok:
        settings = load_settings(WorkerSettings)
        assert settings.heartbeat_interval_s == float(heartbeat_s)
    else:
        with pytest.raises(ConfigurationError, match="TASKFORGE_HEARTBEAT_INTERVAL_S"):
            load_settings(WorkerSettings)


def test_other_services_variables_are_not_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    # One ConfigMap may feed every service: a scheduler variable must not stop the worker.
    monkeypatch.setenv("TASKFORGE_TICK_S", "0.25")
    monkeypatch.setenv("TASKFORGE_API_URL", "http://api:8000")
    monkeypatch.setenv("TASKFORGE_MAX_BATCH_SIZE", "10")
    settings = load_settings(WorkerSettings)
    assert not hasattr(settings, "tick_s")
    assert load_settings(SchedulerSettings).tick_s == 0.25


def test_known_variables_cover_every_service() -> None:
    names = known_variables()
    for cls in (WorkerSettings, SchedulerSettings, ApiSettings, GatewaySettings):
        for field in cls.model_fields:
            assert f"TASKFORGE_{field.upper()}" in names


def test_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_CONCURRENCY", "4")
    assert load_settings(WorkerSettings, concurrency=8).concurrency == 8


def test_prefetch_sets_fetch_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_PREFETCH", "5")
    assert load_settings(WorkerSettings).fetch_batch == 5


def test_default_backoff_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_BACKOFF_KIND", "fixed")
    monkeypatch.setenv("TASKFORGE_BACKOFF_BASE_S", "2.5")
    monkeypatch.setenv("TASKFORGE_BACKOFF_CAP_S", "9")
    monkeypatch.setenv("TASKFORGE_BACKOFF_JITTER", "false")
    settings = load_settings(HandlerSettings)
    assert settings.default_backoff == BackoffPolicy(
        kind="fixed", base_s=2.5, cap_s=9, jitter=False
    )


def test_settings_are_frozen() -> None:
    settings = load_settings(WorkerSettings)
    with pytest.raises(ValueError, match="frozen"):
        settings.concurrency = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TASKFORGE_BACKOFF_CAP_S", "2592001"),  # BackoffPolicy allows at most 30 days
        ("TASKFORGE_BACKOFF_BASE_S", "604801"),  # and a base of at most 7 days
    ],
)
def test_backoff_settings_are_checked_at_load_time(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # A value that passes load_settings but breaks default_backoff would only fail at the
    # first retry, inside a worker, long after deployment: refuse it at start-up.
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(WorkerSettings)


def test_default_backoff_is_valid_at_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_BACKOFF_BASE_S", str(86_400 * 7))
    monkeypatch.setenv("TASKFORGE_BACKOFF_CAP_S", str(86_400 * 30))
    policy = load_settings(WorkerSettings).default_backoff
    assert (policy.base_s, policy.cap_s) == (86_400 * 7, 86_400 * 30)


@pytest.mark.parametrize(
    ("cls", "variable", "value"),
    [
        (cls, variable, value)
        for cls in (ApiSettings, SchedulerSettings)
        for variable, value in [
            ("TASKFORGE_MAX_QUEUES", "0"),
            ("TASKFORGE_METRICS_MAX_QUEUES", "0"),
            ("TASKFORGE_QUEUE_PATTERN", "tenant-(["),
        ]
    ]
    + [(SchedulerSettings, "TASKFORGE_QUEUE_IDLE_TTL_S", "0.5")],
)
def test_queue_bounds_are_checked_at_load_time(
    monkeypatch: pytest.MonkeyPatch,
    cls: type[ApiSettings | SchedulerSettings],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv("TASKFORGE_INTERNAL_TOKEN", "t" * 32)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(cls)


def test_queue_bounds_are_shared_by_api_and_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFORGE_INTERNAL_TOKEN", "t" * 32)
    defaults = load_settings(ApiSettings)
    assert (defaults.max_queues, defaults.queue_pattern, defaults.metrics_max_queues) == (
        1000,
        None,
        100,
    )
    monkeypatch.setenv("TASKFORGE_MAX_QUEUES", "50")
    monkeypatch.setenv("TASKFORGE_QUEUE_PATTERN", "tenant-[a-z]+")
    monkeypatch.setenv("TASKFORGE_METRICS_MAX_QUEUES", "10")
    for cls in (ApiSettings, SchedulerSettings):
        settings = load_settings(cls)
        assert settings.queue_policy.max_queues == 50
        assert settings.queue_policy.pattern == "tenant-[a-z]+"
        assert settings.metrics_max_queues == 10
