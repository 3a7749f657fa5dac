"""The ``email`` handler against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiosmtplib
import httpx
import pytest

from taskforge.handlers.email import EmailRetryableError, email, message_id
from taskforge.handlers.registry import TaskContext
from taskforge.retry import GiveUp, Retry
from taskforge.settings.handlers import HandlerSettings
from tests.support.ports import free_port
from tests.support.smtp_server import SmtpServer

TASK_ID = "emails.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3"
PASSWORD = "pw-Zq81-never-shown"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


def make_ctx(client: httpx.AsyncClient, smtp_port: int, **settings: Any) -> TaskContext:
    settings.setdefault("smtp_security", "none")
    return TaskContext(
        task_id=TASK_ID,
        queue="emails",
        type="email",
        attempt=1,
        traceparent="",
        settings=HandlerSettings(
            redis_url="redis://unused",
            env="dev",
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_from="TaskForge <noreply@taskforge.test>",
            smtp_timeout_s=5,
            **settings,
        ),
        http=client,
    )


async def test_text_message_is_delivered(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    payload = {"to": "ana@example.com", "subject": "Hello Zoë", "text": "Plain body\n"}

    result = await email(payload, make_ctx(client, smtp.port))

    expected_id = f"<{TASK_ID}@taskforge.test>"
    assert result == {"message_id": expected_id, "accepted": ["ana@example.com"], "refused": {}}
    [received] = smtp.messages
    assert received.mail_from == "noreply@taskforge.test"
    assert received.rcpt_tos == ["ana@example.com"]
    message = received.message
    assert message["Subject"] == "Hello Zoë"
    assert message["To"] == "ana@example.com"
    assert message["From"] == "TaskForge <noreply@taskforge.test>"
    assert message["Message-ID"] == expected_id
    assert message["Date"]
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Plain body\n"
    assert received.login is None


async def test_html_goes_in_a_multipart_alternative(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    payload = {
        "to": ["Ana <ana@example.com>", "bo@example.com"],
        "subject": "News",
        "text": "plain version\n",
        "html": "<p>html version</p>\n",
        "reply_to": "help@example.com",
    }

    await email(payload, make_ctx(client, smtp.port))

    message = smtp.messages[0].message
    assert message.get_content_type() == "multipart/alternative"
    assert message["To"] == "Ana <ana@example.com>, bo@example.com"
    assert message["Reply-To"] == "help@example.com"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert parts == {"text/plain": "plain version\n", "text/html": "<p>html version</p>\n"}


async def test_html_alone_is_a_single_html_part(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    await email(
        {"to": "a@example.com", "subject": "s", "html": "<b>hi</b>"}, make_ctx(client, smtp.port)
    )

    message = smtp.messages[0].message
    assert message.get_content_type() == "text/html"


async def test_bcc_reaches_the_envelope_but_no_header(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    payload = {
        "to": "a@example.com",
        "cc": ["c@example.com"],
        "bcc": ["hidden@example.com", "a@example.com"],
        "subject": "s",
        "text": "t",
    }

    result = await email(payload, make_ctx(client, smtp.port))

    [received] = smtp.messages
    assert received.rcpt_tos == ["a@example.com", "c@example.com", "hidden@example.com"]
    assert result["accepted"] == received.rcpt_tos
    assert received.message["Cc"] == "c@example.com"
    assert received.message["Bcc"] is None
    assert b"hidden@example.com" not in received.raw


async def test_login_with_username_and_password(client: httpx.AsyncClient) -> None:
    with SmtpServer(users={"app": PASSWORD}, require_auth=True) as server:
        ctx = make_ctx(client, server.port, smtp_username="app", smtp_password=PASSWORD)

        await email({"to": "a@example.com", "subject": "s", "text": "t"}, ctx)

        [received] = server.messages
        assert received.login == "app"


async def test_the_server_refuses_unauthenticated_senders(client: httpx.AsyncClient) -> None:
    # Checks the test server itself: without it the login test above would prove nothing.
    with SmtpServer(users={"app": PASSWORD}, require_auth=True) as server:
        with pytest.raises(GiveUp, match="530"):
            await email(
                {"to": "a@example.com", "subject": "s", "text": "t"}, make_ctx(client, server.port)
            )
        assert server.messages == []


async def test_wrong_password_gives_up_without_showing_it(client: httpx.AsyncClient) -> None:
    with SmtpServer(users={"app": "the-right-one"}, require_auth=True) as server:
        ctx = make_ctx(client, server.port, smtp_username="app", smtp_password=PASSWORD)

        with pytest.raises(GiveUp, match="535") as caught:
            await email({"to": "a@example.com", "subject": "s", "text": "t"}, ctx)

    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value.__cause__)


async def test_permanent_refusal_gives_up(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    smtp.reject("gone@example.com", 550)

    with pytest.raises(GiveUp, match=r"gone@example\.com: 550"):
        await email(
            {"to": "gone@example.com", "subject": "s", "text": "t"}, make_ctx(client, smtp.port)
        )

    assert smtp.messages == []


async def test_transient_refusal_is_retryable(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    smtp.reject("busy@example.com", 451)

    with pytest.raises(EmailRetryableError, match=r"busy@example\.com: 451"):
        await email(
            {"to": "busy@example.com", "subject": "s", "text": "t"}, make_ctx(client, smtp.port)
        )


async def test_mixed_refusals_are_retryable(client: httpx.AsyncClient, smtp: SmtpServer) -> None:
    smtp.reject("gone@example.com", 550)
    smtp.reject("busy@example.com", 451)
    payload = {"to": ["gone@example.com", "busy@example.com"], "subject": "s", "text": "t"}

    with pytest.raises(EmailRetryableError):
        await email(payload, make_ctx(client, smtp.port))


async def test_partial_refusal_succeeds_and_reports_the_refused(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    smtp.reject("gone@example.com", 550, "No such user")
    payload = {"to": ["ok@example.com", "gone@example.com"], "subject": "s", "text": "t"}

    result = await email(payload, make_ctx(client, smtp.port))

    assert result["accepted"] == ["ok@example.com"]
    assert result["refused"] == {"gone@example.com": "550 No such user"}
    assert smtp.messages[0].rcpt_tos == ["ok@example.com"]


async def test_connection_refused_is_retryable(client: httpx.AsyncClient) -> None:
    ctx = make_ctx(client, free_port())

    with pytest.raises(aiosmtplib.SMTPConnectError) as caught:
        await email({"to": "a@example.com", "subject": "s", "text": "t"}, ctx)

    assert not isinstance(caught.value, (GiveUp, Retry))


async def test_starttls_against_a_plain_server_gives_up(
    client: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    ctx = make_ctx(client, smtp.port, smtp_security="starttls")

    with pytest.raises(GiveUp, match="STARTTLS"):
        await email({"to": "a@example.com", "subject": "s", "text": "t"}, ctx)

    assert smtp.messages == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (["a@example.com"], "must be a JSON object"),
        ({"subject": "s", "text": "t"}, "'to' must be an address or a list"),
        ({"to": [], "subject": "s", "text": "t"}, "at least one address"),
        ({"to": [1], "subject": "s", "text": "t"}, "'to' must be an address or a list"),
        ({"to": "not-an-address", "subject": "s", "text": "t"}, "invalid address"),
        ({"to": "a@example.com, b@example.com", "subject": "s", "text": "t"}, "invalid address"),
        ({"to": "a@example.com", "cc": "x", "subject": "s", "text": "t"}, "'cc' holds an invalid"),
        ({"to": "a@example.com", "text": "t"}, "needs 'subject'"),
        ({"to": "a@example.com", "subject": "s"}, "needs 'text', 'html' or both"),
        ({"to": "a@example.com", "subject": "s", "text": 3}, "'text' must be a string"),
        ({"to": "a@example.com", "subject": "s\r\nBcc: x@evil.test", "text": "t"}, "header"),
    ],
)
async def test_invalid_payloads_give_up(
    client: httpx.AsyncClient, smtp: SmtpServer, payload: Any, message: str
) -> None:
    with pytest.raises(GiveUp, match=message):
        await email(payload, make_ctx(client, smtp.port))

    assert smtp.messages == []


def test_message_id_is_stable_per_task() -> None:
    assert message_id("q.abc", "Name <x@mail.example>") == "<q.abc@mail.example>"
    assert message_id("q.abc", "noreply") == "<q.abc@taskforge.localhost>"
    assert message_id("we ird<id>", "x@y.z") == "<we-ird-id-@y.z>"
