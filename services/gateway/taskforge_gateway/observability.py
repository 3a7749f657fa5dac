"""The gateway's Prometheus metrics and its JSON access log (labels bounded: no key, no id)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram

from taskforge.metrics import Children

REQUESTS = Counter(
    "taskforge_gateway_requests_total",
    "Requests answered by the gateway, by route template, method and status class.",
    ["route", "method", "status_class"],
)
REQUEST_DURATION = Histogram(
    "taskforge_gateway_request_duration_seconds",
    "Time to answer a request, upstream time included.",
    ["route", "method"],
)
AUTH_FAILURES = Counter(
    "taskforge_gateway_auth_failures_total",
    "Refused authentications (missing, invalid, revoked key; throttled address).",
    ["reason"],
)
RATE_LIMITED = Counter(
    "taskforge_gateway_rate_limited_total", "Requests refused by a key's rate limit."
)
UPSTREAM_ERRORS = Counter(
    "taskforge_gateway_upstream_errors_total",
    "Requests the api did not answer (connect, timeout, protocol) or refused (credential).",
    ["kind"],
)

access_log = logging.getLogger("taskforge_gateway.access")


# Bounded like the labels: route templates or ``unmatched``, the route table's methods.
_requests = Children(REQUESTS)
_durations = Children(REQUEST_DURATION)

#: Routes logged at DEBUG only (probes).
QUIET_ROUTES = frozenset({"/healthz", "/readyz"})


def observe(
    *,
    method: str,
    route: str,
    status: int,
    duration_s: float,
    request_id: str,
    key_id: str | None,
    client: str | None,
    trace_id: str | None,
) -> None:
    """Count, time and log one answered request."""
    _requests(route, method, f"{status // 100}xx").inc()
    _durations(route, method).observe(duration_s)
    # Probes every few seconds would drown the log; their failures show in metrics and events.
    level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    access_log.log(
        level,
        "%s %s %d %.1fms",
        method,
        route,
        status,
        duration_s * 1000,
        extra={
            "method": method,
            "route": route,
            "status": status,
            "duration_ms": round(duration_s * 1000, 3),
            "request_id": request_id,
            "key_id": key_id,
            "client": client,
            "trace_id": trace_id,
        },
    )
