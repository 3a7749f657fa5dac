"""A real Jaeger v2 for tracing tests: OTLP/HTTP in, spans read back over its query API.

Jaeger v2 is an OpenTelemetry Collector distribution. :class:`Jaeger` runs ``bin/jaeger`` (built
with ``make -f mk/jaeger.mk jaeger`` first, a no-op when it is up to date) with the collector
configuration of ``make jaeger-up``, ``tools/jaeger/local.yaml`` (memory storage; three ports,
on 127.0.0.1, set to free ones here: OTLP http, query HTTP and gRPC; no :8888 self-metrics, no
health-check or zpages extension). Its log goes to a file that failures quote. Typical use::

    with Jaeger(tmp_path).start() as jaeger:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint}
        ...
        spans = await jaeger.wait_for_trace(trace_id, lambda spans: len(spans) >= 5, 30)

Spans are read from ``/api/v3/traces/{id}`` (OTLP JSON, unadjusted with ``raw_traces``): it keeps
kinds, status, parents and links as exported, which the older ``/api/traces`` folds into tags.
``python -m tests.support.jaeger TRACE_ID`` prints a trace of ``make jaeger-up`` as a tree.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import httpx

from tests.support.ports import free_port
from tests.support.processes import LOG_TAIL_CHARS, REPO_ROOT, log_text, terminate, wait_until

JAEGER_BIN = REPO_ROOT / "bin" / "jaeger"
#: Seconds ``make jaeger`` may take: a cold module cache downloads and compiles a lot.
BUILD_TIMEOUT_S = 1800.0

#: OTLP enums as numbers (what the query API's JSON holds) -> the names used here.
SPAN_KINDS = {
    0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"
}  # fmt: skip
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}

#: The collector configuration ``make jaeger-up`` runs too; its ports come from the environment.
CONFIG = REPO_ROOT / "tools" / "jaeger" / "local.yaml"


@dataclass(frozen=True, slots=True)
class Link:
    """A span link: the span it points to, and its attributes."""

    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Span:
    """One span as Jaeger stored it: ids in lower-case hex, enums as lower-case names, times in
    nanoseconds since the epoch by the exporting process's clock."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    name: str
    kind: str
    status: str
    attributes: dict[str, Any]
    links: tuple[Link, ...]
    start_ns: int
    end_ns: int


#: OTLP JSON ``AnyValue`` scalar fields; 64-bit integers arrive as strings.
_SCALARS: dict[str, Callable[[Any], Any]] = {
    "stringValue": str, "intValue": int, "boolValue": bool, "doubleValue": float,
    "bytesValue": base64.b64decode,
}  # fmt: skip


def _any_value(value: Mapping[str, Any]) -> Any:
    """An OTLP JSON ``AnyValue`` as a Python value."""
    for field, convert in _SCALARS.items():
        if field in value:
            return convert(value[field])
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return _attributes(value["kvlistValue"].get("values", []))
    return None


def _attributes(pairs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: _any_value(pair.get("value", {})) for pair in pairs}


def _enum(value: int | str | None, names: Mapping[int, str], prefix: str) -> str:
    # The JSON may spell an enum as its number or as its proto name (SPAN_KIND_SERVER); an
    # enum at its zero value is left out.
    if isinstance(value, str) and not value.isdigit():
        return value.removeprefix(prefix).lower()
    return names.get(int(value or 0), str(value))


def _hex_id(value: object) -> str:
    """A trace or span id as lower-case hex; OTLP JSON allows hex, Jaeger emits hex."""
    return str(value or "").lower()


def _span(raw: Mapping[str, Any], service: str) -> Span:
    links = tuple(
        Link(_hex_id(link.get("traceId")), _hex_id(link.get("spanId")),
             _attributes(link.get("attributes", [])))
        for link in raw.get("links", [])
    )  # fmt: skip
    return Span(
        trace_id=_hex_id(raw.get("traceId")),
        span_id=_hex_id(raw.get("spanId")),
        parent_span_id=_hex_id(raw.get("parentSpanId")) or None,
        service=service,
        name=str(raw.get("name", "")),
        kind=_enum(raw.get("kind"), SPAN_KINDS, "SPAN_KIND_"),
        status=_enum(raw.get("status", {}).get("code"), STATUS_CODES, "STATUS_CODE_"),
        attributes=_attributes(raw.get("attributes", [])),
        links=links,
        start_ns=int(raw.get("startTimeUnixNano", 0)),
        end_ns=int(raw.get("endTimeUnixNano", 0)),
    )


def parse_spans(document: Mapping[str, Any]) -> list[Span]:
    """Every span of an OTLP JSON ``TracesData`` (bare, or as the query API's ``result``)."""
    data = document.get("result", document)
    spans: list[Span] = []
    for resource_spans in data.get("resourceSpans", []):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.get("scopeSpans", []):
            spans.extend(_span(raw, service) for raw in scope_spans.get("spans", []))
    return spans


def build_jaeger(binary: Path = JAEGER_BIN) -> Path:
    """Build the pinned Jaeger into ``bin/`` if needed (``make -f mk/jaeger.mk jaeger``).

    With no Go toolchain an existing binary is used as it is. A lock file serialises concurrent
    test processes, which would otherwise build into the same file.
    """
    if shutil.which("go") is None and binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / ".jaeger.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            ["make", "--no-print-directory", "-f", "mk/jaeger.mk", "jaeger"], cwd=REPO_ROOT,
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
    if result.returncode != 0 or not binary.exists():
        raise AssertionError(
            f"building Jaeger failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return binary


class Jaeger:
    """A Jaeger v2 process on free ports of 127.0.0.1; see the module docstring.

    Args:
        work_dir: where the log file goes.
        binary: the ``jaeger`` executable (built by :func:`build_jaeger` when it is the default).
    """

    def __init__(self, work_dir: Path, binary: Path = JAEGER_BIN) -> None:
        self.work_dir = Path(work_dir)
        self.binary = binary
        self.log_path = self.work_dir / "jaeger.log"
        self.otlp_port = self.query_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(timeout=5.0)

    @property
    def otlp_endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the SDK appends ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        """Base URL of the query API and UI."""
        return f"http://127.0.0.1:{self.query_port}"

    # -- process control -----------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> Self:
        """Build if needed, start, and wait until both the receiver and the query API answer.

        Raises:
            AssertionError: it did not get ready (the message has its log).
        """
        if self.binary == JAEGER_BIN:
            build_jaeger(self.binary)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._spawn()
        if not self._wait_ready(timeout_s):
            self.stop()
            raise AssertionError(f"Jaeger not ready within {timeout_s:g}s\n{self.describe()}")
        return self

    def _spawn(self) -> None:
        self.otlp_port, self.query_port = free_port(), free_port()
        ports = {
            "JAEGER_OTLP_HTTP_PORT": str(self.otlp_port),
            "JAEGER_QUERY_HTTP_PORT": str(self.query_port),
            "JAEGER_QUERY_GRPC_PORT": str(free_port()),
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--config", str(CONFIG)],
                env={**os.environ, **ports},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc is not None and self.proc.poll() is None:
            # The receiver starts after the extensions: an empty export accepted means both are.
            try:
                services = self._http.get(f"{self.query_url}/api/v3/services")
                export = self._http.post(f"{self.otlp_endpoint}/v1/traces", json={})
                if services.status_code == export.status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a grace period) and reap it."""
        terminate(self.proc)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self._http.close()

    def log_text(self) -> str:
        """Everything Jaeger logged so far."""
        return log_text(self.log_path)

    def describe(self) -> str:
        """Status and log tail, for failure messages."""
        status = None if self.proc is None else self.proc.poll()
        state = "running" if status is None else f"exited with {status}"
        return f"--- jaeger ({state}), log {self.log_path}:\n{self.log_text()[-LOG_TAIL_CHARS:]}"

    # -- queries -------------------------------------------------------------------------

    def export(self, resource_spans: list[dict[str, Any]]) -> None:
        """Send spans as OTLP JSON ``resourceSpans`` (for checking the harness itself)."""
        sent = self._http.post(
            f"{self.otlp_endpoint}/v1/traces", json={"resourceSpans": resource_spans}
        )
        assert sent.status_code == 200, sent.text

    def trace_document(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as the query API returns it (OTLP JSON), or None when Jaeger has none."""
        return query(self._http, self.query_url, trace_id)

    def trace(self, trace_id: str) -> list[Span]:
        """Every span Jaeger holds for ``trace_id`` (hex), in no particular order."""
        return parse_spans(self.trace_document(trace_id) or {})

    async def wait_for_trace(
        self, trace_id: str, predicate: Callable[[list[Span]], bool], timeout_s: float = 30.0
    ) -> list[Span]:
        """Poll :meth:`trace` until ``predicate(spans)`` holds; return those spans.

        Raises:
            AssertionError: it never held; the message lists the spans Jaeger had last.
        """
        last: list[Span] = []

        def check() -> list[Span] | None:
            nonlocal last
            last = self.trace(trace_id)
            return last if predicate(last) else None

        def state() -> str:
            tree = "\n".join(trace_tree(last)) or "(none)"
            return f"trace {trace_id} not as expected; Jaeger has:\n{tree}\n{self.describe()}"

        found: list[Span] = await wait_until(check, timeout_s, interval_s=0.2, message=state)
        return found

    def find_traces(
        self, service: str, operation: str = "", lookback_s: float = 3600.0, limit: int = 100
    ) -> dict[str, list[Span]]:
        """Up to ``limit`` traces with a span of ``service`` (named ``operation``, if given)."""
        now = datetime.now(UTC)
        params = {
            "query.service_name": service,
            "query.start_time_min": (now - timedelta(seconds=lookback_s)).isoformat(),
            # Room for a clock step between the exporting process and this one.
            "query.start_time_max": (now + timedelta(seconds=60)).isoformat(),
            "query.raw_traces": "true",
            "query.num_traces": str(limit),
        }
        if operation:
            params["query.operation_name"] = operation
        traces: dict[str, list[Span]] = {}
        for span in parse_spans(query(self._http, self.query_url, "", params) or {}):
            traces.setdefault(span.trace_id, []).append(span)
        return traces


def query(
    client: httpx.Client, url: str, trace_id: str, params: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """GET ``/api/v3/traces[/trace_id]`` at ``url``: OTLP JSON, None on 404, else AssertionError."""
    path = f"{url}/api/v3/traces" + (f"/{trace_id}" if trace_id else "")
    response = client.get(path, params=params or {"raw_traces": "true"})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    document: dict[str, Any] = response.json()
    return document


def describe_span(span: Span) -> str:
    """One line per span for failure messages: who, what, where in the tree."""
    links = ",".join(link.span_id for link in span.links)
    return (
        f"{span.service} {span.kind} {span.name!r} id={span.span_id} parent={span.parent_span_id}"
        f" {(span.end_ns - span.start_ns) / 1e6:.1f}ms status={span.status} links=[{links}]"
        f" {json.dumps(span.attributes, default=str)}"
    )


def trace_tree(spans: Sequence[Span]) -> list[str]:
    """:func:`describe_span` lines, each span under its parent, siblings in start order."""
    known = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = span.parent_span_id if span.parent_span_id in known else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            lines.append("  " * depth + describe_span(span))
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.support.jaeger TRACE_ID [QUERY_URL]``: print a trace as a tree (for
    ``make jaeger-up``, query API on http://127.0.0.1:16686 by default, which has no UI)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    url = (args[1] if len(args) == 2 else "http://127.0.0.1:16686").rstrip("/")
    try:
        with httpx.Client(timeout=10.0) as client:
            document = query(client, url, args[0])
    except (httpx.HTTPError, AssertionError) as exc:  # unreachable, or a refused trace id
        print(f"{url}: {exc or type(exc).__name__} (is `make jaeger-up` running?)", file=sys.stderr)
        return 1
    if document is None:
        print(f"{url} has no trace {args[0]}", file=sys.stderr)
        return 1
    print("\n".join(trace_tree(parse_spans(document))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
