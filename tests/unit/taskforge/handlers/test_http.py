"""The ``http`` (webhook) handler against a real local HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx
import pytest

from taskforge.handlers.http import (
    MAX_RETRY_AFTER_S,
    WebhookRetryableError,
    http,
    parse_payload,
    raise_for_delivery_status,
)
from taskforge.handlers.registry import TaskContext, load_handlers
from taskforge.retry import GiveUp, Retry
from tests.support.http_sink import HttpSink
from tests.support.ports import free_port
from tests.unit.taskforge.handlers.conftest import handler_settings

TASK_ID = "hooks.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3"
SECRET = "whsec-test-0123456789"


def make_ctx(client: httpx.AsyncClient, attempt: int = 1, **settings: Any) -> TaskContext:
    return TaskContext(
        task_id=TASK_ID,
        queue="hooks",
        type="http",
        attempt=attempt,
        traceparent="",
        settings=handler_settings(**settings),
        http=client,
    )


def verify_signature(header: str, body: bytes, secret: str) -> int:
    """What a receiver does: check v1 and return the signed timestamp."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(
        secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])
    return int(fields["t"])


async def test_2xx_delivers_signed_json_with_task_headers(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    sink.respond(201, body="x" * 1500)
    payload = {
        "url": f"{sink.url}/hooks/order?src=tf",
        "body": {"order": 42, "name": "Zoë"},
        "headers": {"X-Tenant": "acme"},
    }

    result = await http(payload, make_ctx(client, attempt=2, webhook_secret=SECRET))

    assert result == {"status": 201}  # the answer's body is not kept by default
    [request] = sink.requests
    assert request.method == "POST"
    assert request.path == "/hooks/order?src=tf"
    assert request.json() == {"order": 42, "name": "Zoë"}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["idempotency-key"] == TASK_ID
    assert request.headers["x-taskforge-task-id"] == TASK_ID
    assert request.headers["x-taskforge-attempt"] == "2"
    signed_at = verify_signature(request.headers["x-taskforge-signature"], request.body, SECRET)
    assert abs(time.time() - signed_at) < 60


@pytest.mark.parametrize("chars", [1, 1000])
async def test_result_keeps_at_most_the_configured_characters_of_the_answer(
    client: httpx.AsyncClient, sink: HttpSink, chars: int
) -> None:
    sink.respond(200, body="é" * 1500)

    result = await http({"url": sink.url}, make_ctx(client, http_result_body_chars=chars))

    assert result == {"status": 200, "body": "é" * chars}


def test_result_body_setting_is_bounded() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        handler_settings(http_result_body_chars=1001)


async def test_signature_does_not_verify_with_another_secret(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    await http({"url": sink.url, "body": [1, 2]}, make_ctx(client, webhook_secret=SECRET))

    [request] = sink.requests
    with pytest.raises(AssertionError):
        verify_signature(request.headers["x-taskforge-signature"], request.body, "other")


async def test_no_secret_means_no_signature_and_a_null_body(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    result = await http({"url": sink.url, "method": "put"}, make_ctx(client))

    assert result == {"status": 200}
    [request] = sink.requests
    assert request.method == "PUT"
    assert request.body == b"null"
    assert "x-taskforge-signature" not in request.headers


async def test_taskforge_headers_win_over_payload_headers(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    headers = {"Idempotency-Key": "mine", "Content-Type": "application/vnd.acme+json"}
    await http({"url": sink.url, "headers": headers}, make_ctx(client))

    [request] = sink.requests
    assert request.headers["idempotency-key"] == TASK_ID
    assert request.headers["content-type"] == "application/vnd.acme+json"


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_retryable_statuses_raise_a_retryable_error(
    client: httpx.AsyncClient, sink: HttpSink, status: int
) -> None:
    sink.respond(status, body="upstream down")

    with pytest.raises(WebhookRetryableError, match=f"{status}.*upstream down"):
        await http({"url": sink.url}, make_ctx(client))


@pytest.mark.parametrize(
    ("status", "retry_after", "delay_s"),
    [(429, "7", 7.0), (503, "0", 0.0), (503, "999999", MAX_RETRY_AFTER_S)],
)
async def test_retry_after_becomes_the_retry_delay(
    client: httpx.AsyncClient, sink: HttpSink, status: int, retry_after: str, delay_s: float
) -> None:
    sink.respond(status, headers={"Retry-After": retry_after})

    with pytest.raises(Retry) as caught:
        await http({"url": sink.url}, make_ctx(client))

    assert caught.value.delay_s == delay_s


async def test_retry_after_as_a_date_falls_back_to_the_retry_policy(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    sink.respond(429, headers={"Retry-After": "Wed, 21 Oct 2037 07:28:00 GMT"})

    with pytest.raises(WebhookRetryableError):
        await http({"url": sink.url}, make_ctx(client))


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_other_4xx_give_up(client: httpx.AsyncClient, sink: HttpSink, status: int) -> None:
    sink.respond(status, body={"error": "no such hook"})

    with pytest.raises(GiveUp, match=f"answered {status}.*no such hook"):
        await http({"url": sink.url}, make_ctx(client))


async def test_redirects_are_not_followed(client: httpx.AsyncClient, sink: HttpSink) -> None:
    sink.respond(301, headers={"Location": f"{sink.url}/elsewhere"})

    with pytest.raises(GiveUp, match="redirects are not followed"):
        await http({"url": sink.url}, make_ctx(client))

    assert len(sink.requests) == 1


async def test_connection_refused_is_retryable(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"

    with pytest.raises(WebhookRetryableError, match="ConnectError"):
        await http({"url": url}, make_ctx(client))


async def test_timeout_is_retryable_and_capped_by_settings(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    sink.respond(200, delay_s=5)
    ctx = make_ctx(client, webhook_timeout_s=0.2)

    started = time.monotonic()
    with pytest.raises(WebhookRetryableError, match="Timeout"):
        await http({"url": sink.url, "timeout_s": 30}, ctx)

    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("https://example.com", "must be a JSON object"),
        ({}, "'url' must be an http or https URL"),
        ({"url": 42}, "'url' must be an http or https URL"),
        ({"url": "ftp://example.com/x"}, "http or https URL with a host"),
        ({"url": "/relative/path"}, "http or https URL with a host"),
        ({"url": "http://[::1"}, "not a valid URL"),
        ({"url": "http://exa mple.com"}, "invalid host"),
        ({"url": "http://example.com:99999"}, "invalid port"),
        ({"url": "https://example.com", "method": "GET"}, "POST, PUT or PATCH"),
        ({"url": "https://example.com", "headers": ["a"]}, "object of strings"),
        ({"url": "https://example.com", "headers": {"X-A": 1}}, "string value"),
        ({"url": "https://example.com", "headers": {"Bad Name": "1"}}, "valid token"),
        ({"url": "https://example.com", "headers": {"X-A": "a\r\nB: c"}}, "control character"),
        ({"url": "https://example.com", "timeout_s": 0}, "positive number"),
        ({"url": "https://example.com", "timeout_s": True}, "positive number"),
        ({"url": "https://example.com", "body": float("nan")}, "not valid JSON"),
    ],
)
async def test_invalid_payloads_give_up(
    client: httpx.AsyncClient, payload: Any, message: str
) -> None:
    with pytest.raises(GiveUp, match=message):
        await http(payload, make_ctx(client))


async def test_url_stays_out_of_error_messages(client: httpx.AsyncClient) -> None:
    # Webhook URLs often embed tokens, and error messages are stored on the task record.
    with pytest.raises(GiveUp) as caught:
        await http({"url": "http://exa mple.com/hook?token=abc123"}, make_ctx(client))

    assert "abc123" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://bücher.example/hook", "http://[::1]:8080/x", "http://a_b.example.com"]
)
def test_unusual_but_valid_hosts_are_accepted(url: str) -> None:
    settings = handler_settings()

    assert parse_payload({"url": url}, settings).url.host


@pytest.mark.parametrize(
    ("status", "delivered"), [(199, False), (200, True), (204, True), (299, True), (300, False)]
)
def test_only_2xx_count_as_delivered(status: int, delivered: bool) -> None:
    refused: GiveUp | None = None
    try:
        raise_for_delivery_status(httpx.Response(status), "receiver")
    except GiveUp as exc:
        refused = exc

    assert (refused is None) is delivered
    if refused is not None:
        assert f"receiver answered {status}" in str(refused)


def test_builtin_registration_exposes_the_handler() -> None:
    registry = load_handlers([], use_entry_points=False)

    spec = registry.get("http")
    assert spec is not None
    assert spec.func is http
    assert spec.is_async
