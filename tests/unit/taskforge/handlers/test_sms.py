"""The ``sms`` handler against a real local HTTP server standing in for the provider."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from taskforge.handlers.http import WebhookRetryableError
from taskforge.handlers.registry import TaskContext
from taskforge.handlers.sms import MAX_BODY_CHARS, sms
from taskforge.retry import GiveUp, Retry
from taskforge.settings.handlers import HandlerSettings
from tests.support.http_sink import HttpSink
from tests.support.ports import free_port

TASK_ID = "texts.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3"
API_KEY = "sk-test-4f1c2e"
TO = "+15551234567"


def make_ctx(client: httpx.AsyncClient, **settings: Any) -> TaskContext:
    return TaskContext(
        task_id=TASK_ID,
        queue="texts",
        type="sms",
        attempt=1,
        traceparent="",
        settings=HandlerSettings(redis_url="redis://unused", env="dev", **settings),
        http=client,
    )


def provider_ctx(client: httpx.AsyncClient, sink: HttpSink, **settings: Any) -> TaskContext:
    settings.setdefault("sms_from", "+15550000000")
    return make_ctx(client, sms_base_url=f"{sink.url}/v1/", sms_api_key=API_KEY, **settings)


async def test_message_reaches_the_provider(client: httpx.AsyncClient, sink: HttpSink) -> None:
    sink.respond(201, body={"sid": "SM123", "status": "queued"})

    result = await sms({"to": TO, "body": "Code: 123456"}, provider_ctx(client, sink))

    assert result == {"status": 201, "message_id": "SM123"}
    [request] = sink.requests
    assert request.method == "POST"
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == TASK_ID
    assert request.json() == {"to": TO, "from": "+15550000000", "body": "Code: 123456"}


async def test_configured_sender_wins_over_the_payload(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    await sms({"to": TO, "body": "hi", "from": "+15559999999"}, provider_ctx(client, sink))

    assert sink.requests[0].json()["from"] == "+15550000000"


async def test_payload_sender_is_used_when_none_is_configured(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    sink.respond(200, body={"id": 987})
    ctx = provider_ctx(client, sink, sms_from=None)

    result = await sms({"to": TO, "body": "hi", "from": "ACME"}, ctx)

    assert result == {"status": 200, "message_id": "987"}
    assert sink.requests[0].json()["from"] == "ACME"


async def test_non_json_answer_has_no_message_id(client: httpx.AsyncClient, sink: HttpSink) -> None:
    sink.respond(202, body="accepted")

    result = await sms({"to": TO, "body": "hi"}, provider_ctx(client, sink))

    assert result == {"status": 202, "message_id": None}


async def test_503_with_retry_after_asks_for_that_delay(
    client: httpx.AsyncClient, sink: HttpSink
) -> None:
    sink.respond(503, headers={"Retry-After": "30"})

    with pytest.raises(Retry) as caught:
        await sms({"to": TO, "body": "hi"}, provider_ctx(client, sink))

    assert caught.value.delay_s == 30.0


async def test_500_is_retryable(client: httpx.AsyncClient, sink: HttpSink) -> None:
    sink.respond(500)

    with pytest.raises(WebhookRetryableError, match="sms provider answered 500"):
        await sms({"to": TO, "body": "hi"}, provider_ctx(client, sink))


async def test_400_gives_up_quoting_the_provider(client: httpx.AsyncClient, sink: HttpSink) -> None:
    sink.respond(400, body={"error": "unsupported destination"})

    with pytest.raises(GiveUp, match=r"400 Bad Request.*unsupported destination"):
        await sms({"to": TO, "body": "hi"}, provider_ctx(client, sink))


async def test_unreachable_provider_is_retryable(client: httpx.AsyncClient) -> None:
    ctx = make_ctx(client, sms_base_url=f"http://127.0.0.1:{free_port()}", sms_from="+15550000000")

    with pytest.raises(WebhookRetryableError):
        await sms({"to": TO, "body": "hi"}, ctx)


async def test_unconfigured_handler_gives_up(client: httpx.AsyncClient) -> None:
    with pytest.raises(GiveUp, match="set TASKFORGE_SMS_BASE_URL"):
        await sms({"to": TO, "body": "hi"}, make_ctx(client))


async def test_malformed_base_url_gives_up(client: httpx.AsyncClient) -> None:
    ctx = make_ctx(client, sms_base_url="sms.example.com", sms_from="+15550000000")

    with pytest.raises(GiveUp, match="TASKFORGE_SMS_BASE_URL must be an http or https URL"):
        await sms({"to": TO, "body": "hi"}, ctx)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("+15551234567", "must be a JSON object"),
        ({"body": "hi"}, "'to' must be an E.164"),
        ({"to": "15551234567", "body": "hi"}, "'to' must be an E.164"),
        ({"to": "+05551234567", "body": "hi"}, "'to' must be an E.164"),
        ({"to": "+1555", "body": "hi"}, "'to' must be an E.164"),
        ({"to": "+1555123456789012", "body": "hi"}, "'to' must be an E.164"),
        ({"to": "+1555 123 4567", "body": "hi"}, "'to' must be an E.164"),
        ({"to": "+15551234567\n", "body": "hi"}, "'to' must be an E.164"),
        # Arabic-Indic digits: \d would take them, E.164 does not.
        (
            {"to": "+1555\u0661\u0662\u0663\u0664\u0665\u0666\u0667", "body": "hi"},
            "'to' must be an E.164",
        ),
        ({"to": TO}, "'body' must be a string"),
        ({"to": TO, "body": ""}, "'body' must be a string"),
        ({"to": TO, "body": "x" * (MAX_BODY_CHARS + 1)}, "'body' must be a string"),
    ],
)
async def test_invalid_payloads_give_up(
    client: httpx.AsyncClient, sink: HttpSink, payload: Any, message: str
) -> None:
    with pytest.raises(GiveUp, match=message):
        await sms(payload, provider_ctx(client, sink))

    assert sink.requests == []


async def test_missing_sender_gives_up(client: httpx.AsyncClient, sink: HttpSink) -> None:
    with pytest.raises(GiveUp, match="set TASKFORGE_SMS_FROM"):
        await sms({"to": TO, "body": "hi"}, provider_ctx(client, sink, sms_from=None))

    assert sink.requests == []


async def test_longest_body_is_accepted(client: httpx.AsyncClient, sink: HttpSink) -> None:
    await sms({"to": TO, "body": "x" * MAX_BODY_CHARS}, provider_ctx(client, sink))

    assert len(sink.requests[0].json()["body"]) == MAX_BODY_CHARS
