"""Settings of the built-in handlers, shared by every service that runs tasks.

The worker runs tasks, and so does the api's ``consume-once``: both extend this class.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from taskforge.net.addresses import IPNetwork, parse_allow_cidrs, parse_allow_hosts
from taskforge.settings.base import CoreSettings


def split_csv(value: object) -> object:
    """``"a, b"`` → ``["a", "b"]``: list settings are comma lists in the environment."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class HandlerSettings(CoreSettings):
    """Timeouts, result limits and the connections of the http, email and sms handlers."""

    task_timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    #: Modules to import for their ``@handler`` functions (comma list).
    handlers: Annotated[list[str], NoDecode] = Field(default_factory=list)

    #: HMAC-SHA256 key for the ``X-TaskForge-Signature`` header of webhook calls.
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    #: Networks handler HTTP calls may reach although their class is refused by default
    #: (loopback, private...; see taskforge.net.addresses). Comma list of CIDRs.
    http_allow_cidrs: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    #: Host names (exact, or ``*.suffix``) whose addresses are not checked; comma list.
    http_allow_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    #: Characters of a webhook receiver's 2xx answer kept in the task result (0: none), which
    #: every tasks:read key can read.
    http_result_body_chars: Annotated[int, Field(ge=0, le=1000)] = 0

    smtp_host: str = "localhost"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_validate_certs: bool = True
    smtp_from: str = "taskforge@localhost"
    smtp_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0

    sms_base_url: str | None = None
    sms_api_key: SecretStr | None = None
    sms_from: str | None = None
    sms_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    @field_validator("handlers", mode="before")
    @classmethod
    def _handlers_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("http_allow_cidrs", "http_allow_hosts", mode="before")
    @classmethod
    def _allow_list(cls, value: object, info: ValidationInfo) -> object:
        items = split_csv(value)
        if isinstance(items, list | tuple) and all(isinstance(i, str) for i in items):
            if info.field_name == "http_allow_cidrs":
                return parse_allow_cidrs(items)
            return parse_allow_hosts(items)
        return items
