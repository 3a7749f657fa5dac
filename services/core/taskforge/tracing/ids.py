"""Span and trace ids a task's attempts can find again without storing them.

An attempt's span id is a hash of (task id, delivery number), the count of its fetches by
tracing workers that fetch.lua keeps in the record (never given back nor reset, unlike the
attempt count), so the next attempt, a retry or a reclaim after its worker died, links to the
one before it from what the fetch returns.
A task enqueued without trace context gets a trace id hashed from its id, so all of its
attempts still share one trace. Everything else keeps the SDK's random ids.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar

#: Ids the next span started in this context must take (span id, trace id), set just around
#: one ``start_span`` call by :func:`taskforge.tracing.spans.start_attempt`.
FORCED: ContextVar[tuple[int, int] | None] = ContextVar("taskforge_forced_ids", default=None)


def _hashed(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big")
    return value or 1  # zero is the invalid id


def delivery_span_id(task_id: str, delivery: int) -> int:
    """The span id of the attempt ``task_id`` was fetched for the ``delivery``-th time (1-based)."""
    return _hashed(f"{task_id}/{delivery}", 8)


def task_trace_id(task_id: str) -> int:
    """The trace id of a task that arrived without trace context."""
    return _hashed(task_id, 16)
