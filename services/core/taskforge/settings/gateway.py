"""Settings of the gateway service (``taskforge-gateway``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from taskforge.settings.base import CoreSettings


class GatewaySettings(CoreSettings):
    """Authentication, rate limits, body limits and the upstream api."""

    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9100
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    #: Base URL of the api service, e.g. http://taskforge-api:8000.
    api_url: str = Field(description="Upstream api base URL.")
    #: Shared secret sent to the api in ``X-TaskForge-Internal-Token``; required.
    internal_token: SecretStr = Field(description="Gateway-to-api credential.")
    #: An admin key created (or kept) at start-up, for the first login; optional.
    bootstrap_api_key: SecretStr | None = None
    max_body_bytes: Annotated[int, Field(ge=1)] = 2 * 1_048_576
    upstream_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    upstream_max_connections: Annotated[int, Field(ge=1, le=10_000)] = 200
    #: Default per-key sustained rate (requests per second) for keys created without one.
    default_rate_per_s: Annotated[float, Field(gt=0)] = 50.0
    #: Default per-key burst for keys created without one.
    default_burst: Annotated[int, Field(ge=1)] = 100
    #: Failed authentications allowed per client address per window before answering 429.
    auth_failures_per_window: Annotated[int, Field(ge=1)] = 20
    auth_failure_window_s: Annotated[int, Field(ge=1)] = 60
    #: Trust X-Forwarded-For from this many proxies in front (0: use the socket peer).
    trusted_proxy_hops: Annotated[int, Field(ge=0, le=10)] = 0
