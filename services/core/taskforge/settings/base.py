"""The shared settings base: Redis, retention, retry defaults, logging, metrics."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskforge.errors import ConfigurationError
from taskforge.keys import DEFAULT_MAX_QUEUES, QueuePolicy
from taskforge.models import BackoffPolicy

ENV_PREFIX = "TASKFORGE_"

#: Values that mean "nobody set a real secret"; refused outside dev mode.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password", "dev"})

#: Variables the chart or the platform set that are not settings of ours.
_ALLOWED_EXTRA = frozenset({"TASKFORGE_E2E_URL", "TASKFORGE_E2E_API_KEY"})

_registry: list[type[CoreSettings]] = []

S = TypeVar("S", bound="CoreSettings")


class CoreSettings(BaseSettings):
    """Settings every service shares. Field ``x`` is read from ``TASKFORGE_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    env: Literal["dev", "prod"] = Field("prod", description="dev relaxes secret checks.")
    redis_url: str = Field(description="redis://host:port/db (no password: see redis_password).")
    redis_password: SecretStr | None = Field(None, description="Redis AUTH password.")
    redis_socket_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other pods
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9100
    task_ttl_s: Annotated[int, Field(ge=1)] = 86_400
    dead_ttl_s: Annotated[int, Field(ge=1)] = 7 * 86_400
    idempotency_ttl_s: Annotated[int, Field(ge=1)] = 86_400
    max_retries: Annotated[int, Field(ge=0, le=1000)] = 3
    backoff_kind: Literal["fixed", "exponential"] = "exponential"
    backoff_base_s: Annotated[float, Field(ge=0, le=86_400 * 7)] = 1.0
    backoff_cap_s: Annotated[float, Field(ge=0, le=86_400 * 30)] = 300.0
    backoff_jitter: bool = True
    max_payload_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    max_result_bytes: Annotated[int, Field(ge=0)] = 65_536
    #: Live queues the deployment accepts; an enqueue that would create one more is refused.
    max_queues: Annotated[int, Field(ge=1, le=1_000_000)] = DEFAULT_MAX_QUEUES
    #: Regular expression every queue name must match in full (unset: any valid name).
    queue_pattern: str | None = None
    #: Queues exported with their own metric label (the busiest); the rest share ``_other``.
    metrics_max_queues: Annotated[int, Field(ge=1, le=10_000)] = 100

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _registry.append(cls)

    @property
    def default_backoff(self) -> BackoffPolicy:
        """The service-wide backoff policy, the last step of retry resolution."""
        return BackoffPolicy(
            kind=self.backoff_kind,
            base_s=self.backoff_base_s,
            cap_s=self.backoff_cap_s,
            jitter=self.backoff_jitter,
        )

    @property
    def queue_policy(self) -> QueuePolicy:
        """The queue limit and name pattern, as the broker enforces them."""
        return QueuePolicy(max_queues=self.max_queues, pattern=self.queue_pattern)

    @field_validator("queue_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def secret_fields(self) -> dict[str, SecretStr | None]:
        """Secret-typed fields, checked for placeholders outside dev mode."""
        return {
            name: value
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr)
        }

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> CoreSettings:
        if self.env == "dev":
            return self
        for name, value in self.secret_fields().items():
            if value is not None and value.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"{ENV_PREFIX}{name.upper()} holds a placeholder; set a real secret "
                    f"or {ENV_PREFIX}ENV=dev"
                )
        return self


def known_variables() -> set[str]:
    """Every ``TASKFORGE_*`` variable some service's settings class reads."""
    names = {f"{ENV_PREFIX}{f.upper()}" for f in CoreSettings.model_fields}
    for cls in _registry:
        names.update(f"{ENV_PREFIX}{f.upper()}" for f in cls.model_fields)
    return names | _ALLOWED_EXTRA


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment, refusing unknown ``TASKFORGE_*`` variables.

    Raises:
        ConfigurationError: a variable is unknown, missing or invalid; the message names it.
    """
    unknown = sorted(
        name for name in os.environ if name.startswith(ENV_PREFIX) and name not in known_variables()
    )
    if unknown:
        raise ConfigurationError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from exc
