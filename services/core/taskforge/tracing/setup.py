"""Turning tracing on from the standard ``OTEL_*`` variables, and off again at shutdown.

Tracing is off unless an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` and
``OTEL_TRACES_EXPORTER=none`` keep it off. When off, nothing is imported from the SDK and every
span helper returns at its first check, so the hot paths pay one attribute read.

Spans leave through a batch processor on its own thread: a request or a task never waits for the
collector, and when the collector is down the exporter's retries run out on that thread and the
queue drops what does not fit (``OTEL_BSP_MAX_QUEUE_SIZE``). Only OTLP over HTTP/protobuf is
built in; the sampler, resource attributes, headers and timeouts are the SDK's own ``OTEL_*``
variables (docs/tracing.md).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from taskforge.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)

#: How long shutdown waits for the last spans to leave before the process exits anyway.
SHUTDOWN_WAIT_S = 2.0


@dataclass
class _State:
    """The provider spans go to while tracing is on (None: off), and its tracer."""

    provider: TracerProvider | None = None
    tracer: Tracer | None = None

    def install(self, provider: TracerProvider | None) -> None:
        """Send TaskForge's spans to ``provider`` (None turns tracing off)."""
        self.provider = provider
        self.tracer = provider.get_tracer("taskforge") if provider is not None else None


STATE = _State()


def endpoint_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The OTLP traces endpoint the environment asks for, or None when tracing stays off.

    Raises:
        ConfigurationError: an exporter other than otlp or none, a protocol other than
            http/protobuf, or an endpoint that is not an absolute http(s) URL.
    """
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter == "none" or not endpoint:
        return None
    if exporter != "otlp":
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={exporter!r}: TaskForge exports otlp or none"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol != "http/protobuf":
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: TaskForge exports OTLP over "
            "http/protobuf only (a collector's port 4318)"
        )
    parsed = urlsplit(endpoint.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigurationError(f"OTLP endpoint {endpoint!r} is not an absolute http(s) URL")
    return endpoint.strip()


def _service_version() -> str:
    try:
        return version("taskforge-core")
    except PackageNotFoundError:
        return "unknown"


def configure(service: str) -> bool:
    """Install the global tracer provider for ``service`` (e.g. ``taskforge-worker``) when the
    environment asks for it; returns whether tracing is on. Idempotent."""
    if STATE.provider is not None:
        return True
    endpoint = endpoint_from_env()
    if endpoint is None:
        return False
    # Imported only when on: the SDK and exporter cost memory and start-up time.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from taskforge.tracing.generator import TaskIdGenerator

    # Resource.create lets the attributes given here win over OTEL_RESOURCE_ATTRIBUTES and
    # OTEL_SERVICE_NAME: only what the environment leaves out is filled in.
    given = OTELResourceDetector().detect().attributes
    defaults = {"service.name": service, "service.version": _service_version()}
    resource = Resource.create({k: v for k, v in defaults.items() if k not in given})
    provider = TracerProvider(resource=resource, id_generator=TaskIdGenerator())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    STATE.install(provider)
    log.info(
        "tracing on: exporting to %s as %s",
        endpoint,
        resource.attributes.get("service.name"),
    )
    return True


def shutdown() -> None:
    """Flush and stop the exporter, waiting at most :data:`SHUTDOWN_WAIT_S` (a collector that
    is down must not hold a stopping pod past its grace period)."""
    provider = STATE.provider
    STATE.install(None)
    if provider is None:
        return
    stopper = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    stopper.start()
    stopper.join(SHUTDOWN_WAIT_S)


@contextmanager
def session(service: str) -> Iterator[bool]:
    """Tracing for the life of a service's process: :func:`configure`, then :func:`shutdown`.

    Raises:
        ConfigurationError: the ``OTEL_*`` variables ask for what TaskForge cannot export.
    """
    on = configure(service)
    try:
        yield on
    finally:
        shutdown()
