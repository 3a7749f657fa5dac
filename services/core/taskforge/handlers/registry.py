"""The handler registry, the ``@handler`` decorator and handler discovery.

A handler is ``def f(payload, ctx)`` or ``async def f(payload, ctx)``: sync ones run in the
worker's thread pool. Modules named in ``TASKFORGE_HANDLERS`` are imported, and so is every
entry point of the ``taskforge.handlers`` group, so that importing registers their handlers.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from taskforge.errors import ConfigurationError
from taskforge.models import BackoffPolicy

if TYPE_CHECKING:
    import httpx

    from taskforge.settings.handlers import HandlerSettings

#: Entry-point group through which installed packages contribute handlers.
ENTRY_POINT_GROUP = "taskforge.handlers"

HandlerFunc = Callable[[Any, "TaskContext"], Any] | Callable[[Any, "TaskContext"], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(slots=True)
class TaskContext:
    """What a handler may know about the attempt it runs, and shared clients it may use."""

    task_id: str
    queue: str
    type: str
    attempt: int
    traceparent: str
    settings: HandlerSettings
    http: httpx.AsyncClient


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and the task options it declares."""

    name: str
    func: HandlerFunc
    is_async: bool
    max_retries: int | None = None
    backoff: BackoffPolicy | None = None
    timeout_s: float | None = None
    retry_on: tuple[type[BaseException], ...] = ()
    give_up_on: tuple[type[BaseException], ...] = ()


@dataclass
class Registry:
    """Handlers by task type."""

    handlers: dict[str, HandlerSpec] = field(default_factory=dict)

    def register(self, spec: HandlerSpec) -> None:
        """Add ``spec``; a second handler for the same type is a configuration error.

        Raises:
            ConfigurationError: the name is taken by another function.
        """
        existing = self.handlers.get(spec.name)
        if existing is not None and existing.func is not spec.func:
            raise ConfigurationError(f"two handlers registered for task type {spec.name!r}")
        self.handlers[spec.name] = spec

    def get(self, name: str) -> HandlerSpec | None:
        """The handler for task type ``name``, if any."""
        return self.handlers.get(name)

    def handler(
        self,
        name: str,
        *,
        max_retries: int | None = None,
        backoff: BackoffPolicy | None = None,
        timeout_s: float | None = None,
        retry_on: tuple[type[BaseException], ...] = (),
        give_up_on: tuple[type[BaseException], ...] = (),
    ) -> Callable[[F], F]:
        """Decorator registering a function as the handler of task type ``name``."""

        def decorate(func: F) -> F:
            self.register(
                HandlerSpec(
                    name=name,
                    func=func,
                    is_async=asyncio.iscoroutinefunction(func),
                    max_retries=max_retries,
                    backoff=backoff,
                    timeout_s=timeout_s,
                    retry_on=retry_on,
                    give_up_on=give_up_on,
                )
            )
            return func

        return decorate


#: The registry ``@handler`` writes to and workers read from.
default_registry = Registry()

#: ``@handler("name", ...)`` registers into :data:`default_registry`.
handler = default_registry.handler


def load_handlers(modules: list[str], *, use_entry_points: bool = True) -> Registry:
    """Import the built-ins, ``modules`` and entry points; returns the default registry.

    Raises:
        ConfigurationError: a module cannot be imported (the message names it).
    """
    importlib.import_module("taskforge.handlers.builtin")
    names = list(modules)
    if use_entry_points:
        names += [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for module in names:
        try:
            importlib.import_module(module.split(":", 1)[0])
        except ImportError as exc:
            raise ConfigurationError(f"cannot import handler module {module!r}: {exc}") from exc
    return default_registry
