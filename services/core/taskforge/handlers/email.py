"""The ``email`` handler: send a message over SMTP with aiosmtplib.

Payload::

    {"to": "a@example.com" or ["a@example.com", "Bo <b@example.com>"],  # required
     "subject": "Hello",                    # required
     "text": "plain body",                  # text, html or both
     "html": "<p>html body</p>",            # with text: a multipart/alternative message
     "cc": [...], "bcc": [...],             # optional; bcc only reaches the envelope
     "reply_to": "c@example.com"}           # optional

The message comes from ``TASKFORGE_SMTP_FROM`` and goes to ``TASKFORGE_SMTP_HOST``/``_PORT``,
logging in when ``TASKFORGE_SMTP_USERNAME`` is set, with ``TASKFORGE_SMTP_SECURITY``: ``tls``
(TLS from the first byte), ``starttls`` (upgrade, required) or ``none`` (plain text, never
upgraded). Its ``Message-ID`` is derived from the task id, so every retry of a task sends the
same id and mail clients can recognise a duplicate sent after a lost server reply.

Outcomes: success returns ``{"message_id", "accepted", "refused"}``, ``refused`` mapping the
recipients the server turned down when it took the others (the message is not re-sent for
them: that would duplicate it for everyone accepted). Permanent (5xx) replies, every recipient
refused permanently, an unusable server (no STARTTLS or AUTH where needed) and an invalid
payload raise :class:`~taskforge.retry.GiveUp`. Transient (4xx) replies raise
:class:`EmailRetryableError`; connection errors and timeouts propagate as aiosmtplib raised
them, so both are retried. The SMTP password never appears in a message.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import formataddr, formatdate, getaddresses, parseaddr
from typing import Any

import aiosmtplib

from taskforge.handlers.registry import TaskContext, handler
from taskforge.retry import GiveUp
from taskforge.settings.handlers import HandlerSettings

#: What a bare address must look like; deliberately loose, the server has the last word.
_ADDRESS_RE = re.compile(r"[^@\s<>,;\"()]+@[^@\s<>,;\"()]+")
_UNSAFE_ID_CHARS_RE = re.compile(r"[^A-Za-z0-9._-]")
#: Longest recipient detail kept in an error message.
_MAX_DETAIL_CHARS = 500


class EmailRetryableError(Exception):
    """The SMTP server answered with a transient (4xx) failure; a later attempt may succeed."""


Address = tuple[str, str]


def _addresses(payload: dict[str, Any], field: str, *, required: bool) -> list[Address]:
    raw = payload.get(field)
    if raw is None and not required:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise GiveUp(f"email payload '{field}' must be an address or a list of addresses")
    if required and not items:
        raise GiveUp(f"email payload '{field}' must name at least one address")
    parsed = []
    for item in items:
        # getaddresses splits "Name <addr>", and finds two addresses in "a@x, b@y", which
        # must be two list items so that each is checked and reaches the envelope.
        found = getaddresses([item])
        if len(found) != 1 or not _ADDRESS_RE.fullmatch(found[0][1]):
            raise GiveUp(f"email payload '{field}' holds an invalid address: {item[:100]!r}")
        parsed.append(found[0])
    return parsed


def _optional_str(payload: dict[str, Any], field: str) -> str | None:
    value = payload.get(field)
    if value is not None and not isinstance(value, str):
        raise GiveUp(f"email payload '{field}' must be a string")
    return value


def message_id(task_id: str, sender: str) -> str:
    """The ``Message-ID`` of the email sent by task ``task_id``: the same on every attempt."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    if not at or not domain:
        domain = "taskforge.localhost"
    return f"<{_UNSAFE_ID_CHARS_RE.sub('-', task_id)}@{domain}>"


def build_message(
    payload: Any, settings: HandlerSettings, task_id: str
) -> tuple[EmailMessage, list[str]]:
    """The message for an ``email`` payload, and its envelope recipients (bcc included).

    Raises:
        GiveUp: the payload is invalid; the message says which field and why.
    """
    if not isinstance(payload, dict):
        raise GiveUp("email payload must be a JSON object")
    to = _addresses(payload, "to", required=True)
    cc = _addresses(payload, "cc", required=False)
    bcc = _addresses(payload, "bcc", required=False)
    reply_to = _addresses(payload, "reply_to", required=False)
    subject = payload.get("subject")
    if not isinstance(subject, str):
        raise GiveUp("email payload needs 'subject', a string")
    text, html = _optional_str(payload, "text"), _optional_str(payload, "html")
    if text is None and html is None:
        raise GiveUp("email payload needs 'text', 'html' or both")
    message = EmailMessage()
    try:
        message["From"] = settings.smtp_from
        message["To"] = ", ".join(formataddr(a) for a in to)
        if cc:
            message["Cc"] = ", ".join(formataddr(a) for a in cc)
        if reply_to:
            message["Reply-To"] = ", ".join(formataddr(a) for a in reply_to)
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = message_id(task_id, settings.smtp_from)
        if text is not None:
            message.set_content(text)
        if html is not None and text is not None:
            message.add_alternative(html, subtype="html")
        elif html is not None:
            message.set_content(html, subtype="html")
    except ValueError as exc:  # a header holding a line break would forge further headers
        raise GiveUp(f"email payload holds an invalid header value: {exc}") from exc
    # dict.fromkeys drops an address listed twice while keeping the order.
    recipients = list(dict.fromkeys(address for _, address in to + cc + bcc))
    return message, recipients


def _refused_error(exc: aiosmtplib.SMTPRecipientsRefused) -> Exception:
    detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
    detail = detail[:_MAX_DETAIL_CHARS]
    if all(r.code >= 500 for r in exc.recipients):
        return GiveUp(f"SMTP server refused every recipient: {detail}")
    return EmailRetryableError(f"SMTP server refused every recipient, some for now: {detail}")


async def _send(
    message: EmailMessage, recipients: list[str], settings: HandlerSettings
) -> dict[str, aiosmtplib.SMTPResponse]:
    """Send ``message``; returns the recipients refused while others were accepted."""
    security = settings.smtp_security
    username = settings.smtp_username or None
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        refused, _ = await aiosmtplib.send(
            message,
            sender=parseaddr(settings.smtp_from)[1] or settings.smtp_from,
            recipients=recipients,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=username,
            password=password if username else None,
            use_tls=security == "tls",
            # False, not None: None would upgrade opportunistically, and "none" means plain.
            start_tls=security == "starttls",
            validate_certs=settings.smtp_validate_certs,
            timeout=settings.smtp_timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise _refused_error(exc) from exc
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code >= 500:
            raise GiveUp(f"SMTP server refused the message: {exc.code} {exc.message}") from exc
        raise EmailRetryableError(
            f"SMTP server deferred the message: {exc.code} {exc.message}"
        ) from exc
    except (ConnectionError, TimeoutError):
        # Checked before SMTPException, which they also are: a later attempt may get through.
        raise
    except aiosmtplib.SMTPException as exc:
        # What is left is a mismatch with the server (no STARTTLS, no usable AUTH method).
        raise GiveUp(f"SMTP session failed: {exc}") from exc
    except ValueError as exc:  # aiosmtplib refuses an address it cannot put on the wire
        raise GiveUp(f"cannot send to or from these addresses: {exc}") from exc
    return refused


@handler("email")
async def email(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    """Send the payload's email; see the module docstring for the contract."""
    message, recipients = build_message(payload, ctx.settings, ctx.task_id)
    refused = await _send(message, recipients, ctx.settings)
    return {
        "message_id": str(message["Message-ID"]),
        "accepted": [r for r in recipients if r not in refused],
        "refused": {r: f"{response.code} {response.message}" for r, response in refused.items()},
    }
