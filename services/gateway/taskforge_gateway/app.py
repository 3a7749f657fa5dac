"""The gateway's ASGI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taskforge.settings import GatewaySettings
from taskforge.tracing.asgi import FASTAPI_TELEMETRY_OFF, ServerSpans
from taskforge_gateway import keyroutes
from taskforge_gateway.auth import KEY_CACHE_TTL_S
from taskforge_gateway.guard import Guard
from taskforge_gateway.openapi import public_document
from taskforge_gateway.problems import install_handlers, problem
from taskforge_gateway.runtime import Gateway

TITLE = "TaskForge gateway"
VERSION = "1.0.0"


def create_app(settings: GatewaySettings, *, key_cache_ttl_s: float = KEY_CACHE_TTL_S) -> FastAPI:
    """Build the gateway app; connections open and the bootstrap key is ensured in its lifespan.

    Args:
        settings: the gateway's settings.
        key_cache_ttl_s: seconds a verified key is trusted without Redis (tests shorten it).

    Raises:
        ConfigurationError: the settings are unsafe (e.g. a short bootstrap key).
    """
    gateway = Gateway(settings, key_cache_ttl_s=key_cache_ttl_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = _GatewayApp(
        title=TITLE,
        version=VERSION,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )
    app.state.gateway = gateway
    install_handlers(app)
    app.include_router(keyroutes.router)
    own_document = get_openapi(title=TITLE, version=VERSION, routes=keyroutes.router.routes)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False, response_model=None)
    async def readyz(request: Request) -> dict[str, str] | Response:
        if await gateway.broker.ping():
            return {"status": "ok"}
        return problem(
            request.scope,
            503,
            "redis-unavailable",
            "Redis does not answer",
            headers={"Retry-After": "1"},
        )

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        document: dict[str, Any] = await public_document(gateway, own_document)
        return JSONResponse(document)

    return app


class _GatewayApp(FastAPI):
    """FastAPI behind the :class:`Guard`: every HTTP request meets the guard first, inside its
    request span (:class:`ServerSpans`, a pass-through while tracing is off).

    The guard stands in front of FastAPI itself, which wraps every ``send`` in its middleware
    layers. A proxied request never reaches FastAPI; the guard turns every error into a problem
    document itself. Probes, the OpenAPI document and the key routes go on to FastAPI.
    """

    _outer: ServerSpans | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        if self._outer is None:
            self._outer = ServerSpans(Guard(super().__call__, self.state.gateway))
        await self._outer(scope, receive, send)
