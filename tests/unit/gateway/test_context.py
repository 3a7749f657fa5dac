"""Request id, trace context and client address, from headers alone."""

from __future__ import annotations

import re

import pytest
from starlette.datastructures import Headers

from taskforge_gateway.auth import presented_key
from taskforge_gateway.context import RequestHeaders, client_address, request_id, trace_context


def _headers(*pairs: tuple[str, str]) -> Headers:
    return Headers(raw=[(k.lower().encode(), v.encode()) for k, v in pairs])


def test_request_id_kept_or_generated() -> None:
    assert request_id(_headers(("X-Request-Id", "a.b_c-1"))) == "a.b_c-1"
    assert re.fullmatch(r"[0-9a-f]{32}", request_id(_headers(("X-Request-Id", "a/b"))))
    assert re.fullmatch(r"[0-9a-f]{32}", request_id(_headers()))


def test_trace_context_continued_or_started() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    assert trace_context(_headers(("traceparent", parent), ("tracestate", "a=1"))) == (
        parent,
        "a=1",
    )
    started, state = trace_context(_headers(("tracestate", "a=1")))
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", started) and state is None
    assert trace_context(_headers())[0] != started


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (0, ["9.9.9.9"], "10.0.0.1"),
        (1, ["1.1.1.1, 2.2.2.2"], "2.2.2.2"),
        (2, ["1.1.1.1, 2.2.2.2"], "1.1.1.1"),
        (1, ["1.1.1.1", "2.2.2.2"], "2.2.2.2"),
        (1, [], "10.0.0.1"),
        (3, ["1.1.1.1"], "1.1.1.1"),
    ],
)
def test_client_address_counts_trusted_hops_from_the_right(
    hops: int, forwarded: list[str], expected: str
) -> None:
    headers = _headers(*[("X-Forwarded-For", value) for value in forwarded])
    assert client_address("10.0.0.1", headers, hops) == expected


def test_client_address_is_bounded() -> None:
    headers = _headers(("X-Forwarded-For", "x" * 500))
    assert len(client_address("10.0.0.1", headers, 1)) == 64
    assert client_address(None, _headers(), 0) == "unknown"


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("Authorization", "Bearer abc")], "abc"),
        ([("Authorization", "BEARER  abc ")], "abc"),
        ([("X-API-Key", "xyz")], "xyz"),
        ([("Authorization", "Bearer abc"), ("X-API-Key", "xyz")], "abc"),
        ([("Authorization", "Basic abc")], None),
        ([("Authorization", "Bearer ")], None),
        ([], None),
    ],
)
def test_presented_key(pairs: list[tuple[str, str]], expected: str | None) -> None:
    assert presented_key(_headers(*pairs)) == expected


def test_request_headers_read_like_starlettes() -> None:
    raw = [(b"x-api-key", b"first"), (b"x-api-key", b"second"), (b"x-forwarded-for", b"a, b"),
           (b"x-forwarded-for", b"c")]  # fmt: skip
    fast = RequestHeaders({"type": "http", "headers": raw})
    reference = Headers(raw=raw)
    for name in ("x-api-key", "X-API-Key", "x-forwarded-for", "traceparent"):
        assert fast.get(name) == reference.get(name)
        assert (name in fast) == (name in reference)
    assert fast["X-Api-Key"] == "first"
    with pytest.raises(KeyError):
        fast["traceparent"]
    assert fast.getlist("x-forwarded-for") == ["a, b", "c"]
    assert client_address("10.0.0.9", fast, 1) == client_address("10.0.0.9", reference, 1)
