"""``/v1/keys``: API key administration, served by the gateway itself (``admin`` scope)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from taskforge.apikeys import ApiKey, Scope
from taskforge.problems import PROBLEM_MEDIA_TYPE
from taskforge_gateway.problems import GatewayProblem
from taskforge_gateway.runtime import Gateway

#: Allowed key names: shown in listings and logs, so no control characters.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:@/-]{0,63}$"


def problem_content(description: str) -> dict[str, Any]:
    """An OpenAPI response entry for a problem document."""
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


class KeyCreate(BaseModel):
    """A key to create. Omitted limits follow the gateway's defaults, also when they change."""

    # Strict like the api's bodies: a limit is never guessed from a string or a boolean.
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN, description="Who or what uses the key.")
    scopes: list[Scope] = Field(min_length=1, max_length=3, description="admin implies all.")
    rate_per_s: float | None = Field(
        None, gt=0, le=1_000_000, allow_inf_nan=False, description="Sustained requests/s."
    )
    burst: int | None = Field(None, ge=1, le=1_000_000, description="Requests at once.")


class KeyInfo(BaseModel):
    """A stored key, without its secret. Null limits mean the gateway's defaults."""

    id: str
    name: str
    scopes: list[Scope]
    rate_per_s: float | None
    burst: int | None
    created_at: datetime
    revoked: bool
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyInfo:
        """The public view of ``key``."""
        return cls(
            id=key.id,
            name=key.name,
            scopes=sorted(key.scopes),
            rate_per_s=key.rate_per_s,
            burst=key.burst,
            created_at=_time(key.created_ms),
            revoked=key.revoked,
            last_used_at=_time(key.last_used_ms) if key.last_used_ms else None,
        )


class KeyCreated(BaseModel):
    """A new key. ``key`` is shown this once: store it now."""

    id: str
    key: str
    name: str
    scopes: list[Scope]
    rate_per_s: float | None
    burst: int | None
    created_at: datetime


class KeyList(BaseModel):
    """Every key, oldest first."""

    items: list[KeyInfo]


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def get_gateway(request: Request) -> Gateway:
    """The app's gateway runtime."""
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]

router = APIRouter(prefix="/v1/keys", tags=["API keys"])


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    responses={422: problem_content("Invalid body, with field errors.")},
    summary="Create an API key",
)
async def create_key(body: KeyCreate, gateway: GatewayDep) -> KeyCreated:
    """Create a key; the response is the only time its secret is shown."""
    new = await gateway.store.create(
        body.name, frozenset(body.scopes), rate_per_s=body.rate_per_s, burst=body.burst
    )
    if new is None:  # pragma: no cover - a fresh random key cannot exist already
        raise RuntimeError("a freshly generated key already exists")
    info = KeyInfo.of(new.key)
    return KeyCreated(key=new.secret, **info.model_dump(exclude={"revoked", "last_used_at"}))


@router.get("", response_model=KeyList, summary="List API keys")
async def list_keys(gateway: GatewayDep) -> KeyList:
    """Every key with its scopes, limits and last use; never a secret or a hash."""
    return KeyList(items=[KeyInfo.of(k) for k in await gateway.store.list_keys()])


@router.delete(
    "/{key_id}",
    status_code=204,
    response_class=Response,
    responses={404: problem_content("No key with this id.")},
    summary="Revoke an API key",
)
async def revoke_key(key_id: str, gateway: GatewayDep) -> Response:
    """Revoke a key (idempotent). Other gateway replicas stop accepting it within 5 s."""
    key = await gateway.store.revoke(key_id)
    if key is None:
        raise GatewayProblem(404, "key-not-found", f"no API key with id {key_id!r}")
    gateway.auth.forget(key.id)
    return Response(status_code=204)
