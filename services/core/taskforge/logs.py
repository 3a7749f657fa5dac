"""JSON logs with task and trace ids, one line per record."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from taskforge.tracing.spans import current_ids

#: ``extra=`` keys copied into every JSON line when present: task context, then the access
#: fields of request logs.
CONTEXT_FIELDS = (
    "task_id", "queue", "task_type", "attempt", "trace_id", "span_id", "worker", "outcome",
    "method", "route", "status", "duration_ms", "request_id", "key_id", "client",
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    """Formats records as one JSON object per line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        ids = current_ids()
        # With tracing on, a line logged inside a span names it (docs/tracing.md).
        if ids is not None and line.get("trace_id", ids[0]) == ids[0]:
            line["trace_id"] = ids[0]
            line.setdefault("span_id", ids[1])
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def trace_id_of(traceparent: str) -> str | None:
    """The trace id of a W3C ``traceparent`` header value, if well formed."""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def configure_logging(service: str, level: str, fmt: str) -> None:
    """Send the root logger to stderr as JSON (or text in dev) at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
