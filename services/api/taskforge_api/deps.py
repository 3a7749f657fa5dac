"""Request dependencies: the gateway credential, the broker, the settings."""

from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from taskforge.broker import Broker
from taskforge.settings import ApiSettings

#: Header carrying the gateway's shared credential.
INTERNAL_TOKEN_HEADER = "x-taskforge-internal-token"  # noqa: S105 - a header name

#: Header in which the gateway names the API key that made the request.
KEY_ID_HEADER = "x-taskforge-key-id"

#: A key id as the gateway sends it; anything else is treated as no client identity.
_KEY_ID_RE = re.compile(r"^[0-9a-f]{12}$")

#: Scope of callers without a client identity (the internal credential used directly).
INTERNAL_SCOPE = "_"


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
    settings: ApiSettings = request.app.state.settings
    if not gateway_credential_ok(request.headers.get(INTERNAL_TOKEN_HEADER, ""), settings):
        raise HTTPException(401, "requests must come through the gateway")


def gateway_credential_ok(presented: str, settings: ApiSettings) -> bool:
    """Whether ``presented`` is the gateway's credential (compared in constant time)."""
    expected = settings.internal_token.get_secret_value()
    return hmac.compare_digest(presented.encode(), expected.encode())


async def client_scope(request: Request) -> str:
    """Whose idempotency keys a request uses: its API key's id, or :data:`INTERNAL_SCOPE`.

    Read from the raw headers (like the credential) so that it stays out of the public
    OpenAPI document: clients never send it, the gateway sets it.
    """
    return scope_of_key_id(request.headers.get(KEY_ID_HEADER, ""))


def scope_of_key_id(key_id: str) -> str:
    """The idempotency scope named by a ``X-TaskForge-Key-Id`` value (:func:`client_scope`)."""
    return key_id if _KEY_ID_RE.fullmatch(key_id) else INTERNAL_SCOPE


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
ClientScopeDep = Annotated[str, Depends(client_scope)]
