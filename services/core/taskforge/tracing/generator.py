"""The id generator of TaskForge's tracer provider (imported only when tracing is on)."""

from __future__ import annotations

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from taskforge.tracing.ids import FORCED


class TaskIdGenerator(RandomIdGenerator):
    """Random ids, but for a span started while :data:`FORCED` holds ids."""

    def generate_span_id(self) -> int:
        forced = FORCED.get()
        return forced[0] if forced else super().generate_span_id()

    def generate_trace_id(self) -> int:
        forced = FORCED.get()
        return forced[1] if forced else super().generate_trace_id()
