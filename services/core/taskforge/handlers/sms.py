"""The ``sms`` handler: send a text message through a provider's HTTP API.

Payload::

    {"to": "+15551234567",   # required; E.164
     "body": "Your code is 123456",  # required; 1 to 1600 characters
     "from": "+15557654321"}  # used only when TASKFORGE_SMS_FROM is unset

The handler POSTs ``{"to", "from", "body"}`` as JSON to ``TASKFORGE_SMS_BASE_URL + "/messages"``
with ``Authorization: Bearer <TASKFORGE_SMS_API_KEY>`` (when a key is set) and
``Idempotency-Key: <task id>``, within ``TASKFORGE_SMS_TIMEOUT_S``. The configured sender wins
over the payload's because providers only deliver from senders registered with the account,
and operators, not task submitters, own that list.

Statuses are judged exactly as for webhooks (:func:`taskforge.handlers.http.send_checked`):
2xx succeeds with ``{"status": code, "message_id": <the answer's "id" or "sid", or null>}``;
408, 429 and 5xx are retried (honouring ``Retry-After`` on 429 and 503); other statuses, an
invalid payload and a missing configuration give up.
"""

from __future__ import annotations

import json
import re
from typing import Any

from taskforge.handlers.http import parse_http_url, send_checked
from taskforge.handlers.registry import TaskContext, handler
from taskforge.retry import GiveUp

#: Longest body accepted: ten concatenated 160-character segments, a common provider limit.
MAX_BODY_CHARS = 1600
# ASCII digits only: \d would also accept digits of other scripts.
_E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")
_MAX_SENDER_CHARS = 32


def _sender(payload: dict[str, Any], configured: str | None) -> str:
    if configured:
        return configured
    sender = payload.get("from")
    if not isinstance(sender, str) or not 0 < len(sender) <= _MAX_SENDER_CHARS:
        raise GiveUp(
            "sms needs a sender: set TASKFORGE_SMS_FROM or give 'from' "
            f"(1 to {_MAX_SENDER_CHARS} characters) in the payload"
        )
    return sender


def parse_payload(payload: Any, configured_sender: str | None) -> dict[str, str]:
    """The JSON message for the provider, from an ``sms`` payload.

    Raises:
        GiveUp: the payload is invalid; the message says which field and why.
    """
    if not isinstance(payload, dict):
        raise GiveUp("sms payload must be a JSON object")
    to = payload.get("to")
    # The number itself stays out of the message: error texts are stored and logged.
    if not isinstance(to, str) or not _E164_RE.fullmatch(to):
        raise GiveUp("sms payload 'to' must be an E.164 phone number such as +15551234567")
    body = payload.get("body")
    if not isinstance(body, str) or not 0 < len(body) <= MAX_BODY_CHARS:
        raise GiveUp(f"sms payload 'body' must be a string of 1 to {MAX_BODY_CHARS} characters")
    return {"to": to, "from": _sender(payload, configured_sender), "body": body}


def _message_id(text: str) -> str | None:
    try:
        answer = json.loads(text)
    except ValueError:  # providers are not obliged to answer JSON; the id is a nicety
        return None
    if not isinstance(answer, dict):
        return None
    for key in ("id", "sid"):
        value = answer.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return None


@handler("sms")
async def sms(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    """Send the payload's text message; see the module docstring for the contract."""
    settings = ctx.settings
    if not settings.sms_base_url:
        raise GiveUp("sms handler not configured: set TASKFORGE_SMS_BASE_URL")
    # Checked here because httpx would refuse a bad URL only when sending, as if transient.
    parse_http_url(settings.sms_base_url, "TASKFORGE_SMS_BASE_URL")
    message = parse_payload(payload, settings.sms_from)
    headers = {"Accept": "application/json", "Idempotency-Key": ctx.task_id}
    if settings.sms_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.sms_api_key.get_secret_value()}"
    request = ctx.http.build_request(
        "POST",
        f"{settings.sms_base_url.rstrip('/')}/messages",
        json=message,
        headers=headers,
        timeout=settings.sms_timeout_s,
    )
    response, text = await send_checked(ctx.http, request, "sms provider")
    return {"status": response.status_code, "message_id": _message_id(text)}
