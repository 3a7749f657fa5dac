"""Settings of the enqueue/status API service (``taskforge-api``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from taskforge.models import DEFAULT_MAX_JSON_DEPTH, MAX_STORED_JSON_DEPTH
from taskforge.settings.handlers import HandlerSettings


class ApiSettings(HandlerSettings):
    """Where the api listens, what it accepts, and the credential the gateway must present.

    It extends the handler settings because ``consume-once`` runs a task in the api process,
    exactly as a worker would.
    """

    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9101
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    #: Shared secret the gateway sends in ``X-TaskForge-Internal-Token``; required.
    internal_token: SecretStr = Field(description="Gateway-to-api credential.")
    max_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    #: Largest request body accepted, in bytes (payload limit plus envelope).
    max_body_bytes: Annotated[int, Field(ge=1)] = 2 * 1_048_576
    #: Deepest nesting of a request body (the body itself is level 1); deeper is a 422.
    #: Bounded so that whatever is accepted can always be stored and shown again.
    max_json_depth: Annotated[int, Field(ge=2, le=MAX_STORED_JSON_DEPTH - 8)] = (
        DEFAULT_MAX_JSON_DEPTH
    )
    #: Lease of a task taken by ``consume-once``.
    lease_s: Annotated[float, Field(ge=0.5, le=3600)] = 30.0
