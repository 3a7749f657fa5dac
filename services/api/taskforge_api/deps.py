"""Request dependencies: the gateway credential, the broker, the settings."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from taskforge.broker import Broker
from taskforge.settings import ApiSettings

#: Header carrying the gateway's shared credential.
INTERNAL_TOKEN_HEADER = "x-taskforge-internal-token"  # noqa: S105 - a header name


async def get_settings(request: Request) -> ApiSettings:
    """The settings the app was built with (async: sync dependencies cost a thread hop)."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_broker(request: Request) -> Broker:
    """The app's broker."""
    broker: Broker = request.app.state.broker
    return broker


async def require_gateway(request: Request) -> None:
    """Refuse requests that do not carry the gateway's credential.

    Read from the raw headers rather than declared as a parameter, so that the credential
    never appears in the public OpenAPI document.

    Raises:
        HTTPException: 401 when the header is missing or wrong.
    """
    presented = request.headers.get(INTERNAL_TOKEN_HEADER, "")
    settings: ApiSettings = request.app.state.settings
    expected = settings.internal_token.get_secret_value()
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(401, "requests must come through the gateway")


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
