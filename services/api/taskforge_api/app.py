"""The api's FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from taskforge.broker import Broker
from taskforge.execution import ExecutionEnv
from taskforge.handlers import load_handlers
from taskforge.net.egress import handler_client
from taskforge.settings import ApiSettings
from taskforge.tracing.asgi import FASTAPI_TELEMETRY_OFF, ServerSpans
from taskforge_api.deps import require_gateway
from taskforge_api.fastpath import FastEnqueue
from taskforge_api.limits import BodyLimits, BodyTooLarge
from taskforge_api.observability import RequestMetrics
from taskforge_api.problems import install_handlers, problem_media_types, problem_response
from taskforge_api.routes import dlq, legacy, queues, tasks
from taskforge_api.schemas import Health
from taskforge_api.sysmetrics import RateTracker

DESCRIPTION = """Enqueue tasks, follow their status, operate queues and the dead-letter queue.

Errors are `application/problem+json` (RFC 9457). Reach this API through the gateway, which
authenticates API keys and applies rate limits.
"""


class _Api(FastAPI):
    """FastAPI behind the enqueue fast path (:class:`FastEnqueue`), and both behind the
    request spans (:class:`ServerSpans`, a pass-through while tracing is off).

    The fast path stands in front of FastAPI itself, which wraps every ``send`` in its
    middleware layers.
    """

    _outer: ServerSpans | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._outer is None:
            fast = FastEnqueue(super().__call__, self.state)
            self._outer = ServerSpans(fast)
        await self._outer(scope, receive, send)


def create_app(settings: ApiSettings, *, broker: Broker | None = None) -> FastAPI:
    """Build the api app; connections are opened in its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.broker = broker or Broker.from_settings(settings)
        threads = ThreadPoolExecutor(4, thread_name_prefix="consume-once")
        async with handler_client(settings) as http:
            registry = load_handlers(settings.handlers)
            app.state.execution = ExecutionEnv(registry, settings, http, threads)
            try:
                yield
            finally:
                threads.shutdown(wait=False, cancel_futures=True)
                if broker is None:
                    await app.state.broker.close()

    app = _Api(
        title="TaskForge API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=FASTAPI_TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.rates = RateTracker()
    install_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_types(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return problem_response(request, 413, "content-too-large", str(exc))

    @app.get("/healthz", response_model=Health, include_in_schema=False)
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, include_in_schema=False)
    async def readyz(request: Request) -> Health | JSONResponse:
        if await request.app.state.broker.ping():
            return Health(status="ok")
        return problem_response(
            request, 503, "redis-unavailable", "Redis does not answer", headers={"Retry-After": "1"}
        )

    guarded = [Depends(require_gateway)]
    for router in (tasks.router, queues.router, dlq.router, legacy.router):
        app.include_router(router, dependencies=guarded)
    app.add_middleware(BodyLimits, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)
    return app
