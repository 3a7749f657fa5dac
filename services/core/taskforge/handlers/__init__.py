"""Task handlers: the registry, the ``@handler`` decorator, and the built-in handlers."""

from taskforge.handlers.registry import (
    HandlerSpec,
    Registry,
    TaskContext,
    default_registry,
    handler,
    load_handlers,
)

__all__ = [
    "HandlerSpec",
    "Registry",
    "TaskContext",
    "default_registry",
    "handler",
    "load_handlers",
]
