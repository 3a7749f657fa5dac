"""OpenTelemetry traces across gateway, api, worker and scheduler (docs/tracing.md)."""

from taskforge.tracing.setup import configure, endpoint_from_env, session, shutdown
from taskforge.tracing.spans import (
    activated,
    current_ids,
    current_traceparent,
    enabled,
    end_attempt,
    error_type,
    extract,
    http_client,
    record_pass,
    record_status,
    redis_operation,
    sending,
    start_attempt,
    traceparent_of,
    tracer,
    within,
)

__all__ = [
    "activated",
    "configure",
    "current_ids",
    "current_traceparent",
    "enabled",
    "end_attempt",
    "endpoint_from_env",
    "error_type",
    "extract",
    "http_client",
    "record_pass",
    "record_status",
    "redis_operation",
    "sending",
    "session",
    "shutdown",
    "start_attempt",
    "traceparent_of",
    "tracer",
    "within",
]
