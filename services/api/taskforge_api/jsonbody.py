"""The one place request bodies are parsed: strict UTF-8 JSON, bounded nesting, finite numbers.

FastAPI parses a body with ``Request.json()``; every router of the api uses
:class:`CheckedJsonRoute`, whose requests parse with :func:`taskforge.models.loads_checked`
instead. A refused body is a 422 naming the offending value (``["body", "payload", "a", 3]``)
before any model sees it, so nothing that could not be stored and read back gets in.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from taskforge.execution import storable
from taskforge.models import DEFAULT_MAX_JSON_DEPTH, JsonFault, loads_checked


class InvalidJsonBody(HTTPException):
    """A body refused by :func:`loads_checked`; answered as a 422 with one field error.

    An ``HTTPException`` because FastAPI passes those through its body parsing untouched
    (anything else would become a bare 400).
    """

    def __init__(self, fault: JsonFault) -> None:
        super().__init__(422, str(fault))
        # A refused key may itself be a lone surrogate: name it escaped, as valid UTF-8.
        loc = [storable(p) if isinstance(p, str) else p for p in fault.path]
        self.errors = [{"loc": ["body", *loc], "msg": str(fault), "type": fault.kind}]


class CheckedJsonRequest(Request):
    """A request whose JSON body is parsed once, strictly."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            settings = getattr(self.app.state, "settings", None)
            max_depth = getattr(settings, "max_json_depth", DEFAULT_MAX_JSON_DEPTH)
            try:
                self._json = loads_checked(await self.body(), max_depth)
            except JsonFault as fault:
                raise InvalidJsonBody(fault) from None
        return self._json


class CheckedJsonRoute(APIRoute):
    """An API route that parses its body with :class:`CheckedJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(CheckedJsonRequest(request.scope, request.receive))

        return checked
