"""The ``http`` handler: deliver a signed JSON webhook, retrying only what a retry can fix.

Payload::

    {"url": "https://example.com/hook",  # required; http or https
     "body": {"any": "JSON"},              # default null
     "headers": {"X-Custom": "1"},         # optional; ASCII names and values
     "method": "POST",                     # POST (default), PUT or PATCH
     "timeout_s": 5}                       # optional; capped by TASKFORGE_WEBHOOK_TIMEOUT_S

The body is sent as compact JSON with ``Content-Type: application/json`` (a payload header may
override the content type). Every request also carries ``X-TaskForge-Task-Id``,
``X-TaskForge-Attempt`` and ``Idempotency-Key: <task id>``: the key is the same on every retry,
so a receiver can drop a delivery it has already processed. These TaskForge headers replace
payload headers of the same name. Redirects are not followed.

Destinations: the request goes through the handlers' egress-guarded client
(:mod:`taskforge.net.egress`), which refuses loopback, private, link-local, unique-local,
multicast, reserved and cloud metadata addresses unless ``TASKFORGE_HTTP_ALLOW_CIDRS`` or
``TASKFORGE_HTTP_ALLOW_HOSTS`` allow them, checked on the address actually connected to. A
refusal is a :class:`~taskforge.net.egress.DestinationRefused` (a ``GiveUp``): the task is
dead at once, its error naming the address and its class.

Signature (when ``TASKFORGE_WEBHOOK_SECRET`` is set)::

    X-TaskForge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

To verify, a receiver splits the header on ``,`` then ``=``, recomputes the HMAC-SHA256 keyed
with the secret (UTF-8) over the ASCII timestamp, a dot and the raw body bytes as received
(before any JSON parsing), compares its hex digest with ``v1`` using a constant-time comparison
(``hmac.compare_digest``) and rejects timestamps more than a few minutes from its clock, which
stops replays. Each attempt is signed afresh, so ``t`` changes between retries. Receivers
should ignore keys they do not know, so that the scheme can grow (say, a second ``v1`` during
secret rotation).

Outcomes: 2xx succeeds with ``{"status": code}``, plus ``"body"``: the first
``TASKFORGE_HTTP_RESULT_BODY_CHARS`` characters of the answer when that is above 0 (the default
keeps none: any tasks:read key can read a result). At most 64 KiB of an answer is read. 408,
429 and 5xx raise :class:`WebhookRetryableError`, or :class:`~taskforge.retry.Retry` with the
receiver's delay when a 429 or 503 carries ``Retry-After`` in seconds (at most an hour). Network
errors and timeouts raise :class:`WebhookRetryableError`. Any other status, and an invalid
payload, raise :class:`~taskforge.retry.GiveUp`. The error of a failed delivery quotes at most
200 characters of the answer. The ``sms`` handler shares this classification through
:func:`send_checked`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

from taskforge.handlers.registry import TaskContext, handler
from taskforge.net.egress import GuardedClient
from taskforge.retry import GiveUp, Retry
from taskforge.settings.handlers import HandlerSettings

SIGNATURE_HEADER = "X-TaskForge-Signature"
#: Bytes of an answer read at most: a receiver must not be able to exhaust a worker's memory.
MAX_RESPONSE_BYTES = 64 * 1024
#: Longest ``Retry-After`` honoured; a longer one would park the task for an unbounded time.
MAX_RETRY_AFTER_S = 3600.0

_METHODS = frozenset({"POST", "PUT", "PATCH"})
_RETRYABLE_4XX = frozenset({408, 429})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_RETRY_AFTER_RE = re.compile(r"[0-9]{1,10}")
# A DNS name (IDNA already applied by httpx), an IPv4 address or an IPv6 one without brackets.
_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")
# RFC 9110 token characters; values are printable ASCII because httpx encodes them as ASCII.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE_RE = re.compile(r"[\x20-\x7e\t]*")


class WebhookRetryableError(Exception):
    """A delivery failed in a way a later attempt may not: 408, 429, 5xx or a network error."""


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A validated ``http`` payload."""

    url: httpx.URL
    method: str
    body: bytes
    headers: dict[str, str]
    timeout_s: float


def parse_http_url(raw: Any, what: str) -> httpx.URL:
    """``raw`` as an absolute http(s) URL.

    The URL is kept out of error messages: webhook URLs often embed tokens.

    Raises:
        GiveUp: ``raw`` is not such a URL; the message starts with ``what``.
    """
    if not isinstance(raw, str) or not raw:
        raise GiveUp(f"{what} must be an http or https URL")
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL:
        raise GiveUp(f"{what} is not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise GiveUp(f"{what} must be an http or https URL with a host")
    # httpx percent-encodes a host such as "exa mple.com" and refuses no port number: both
    # would then fail every attempt as network errors, which look retryable.
    if not _HOST_RE.fullmatch(url.raw_host.decode("ascii", "replace")):
        raise GiveUp(f"{what} has an invalid host")
    if url.port is not None and not 0 < url.port < 65536:
        raise GiveUp(f"{what} has an invalid port")
    return url


def _parse_headers(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GiveUp("http payload 'headers' must be an object of strings")
    for name, value in raw.items():
        # httpx would refuse these only when sending, as a transport error that looks retryable.
        if not (isinstance(name, str) and _HEADER_NAME_RE.fullmatch(name)):
            raise GiveUp(f"http payload header name {str(name)[:100]!r} is not a valid token")
        if not isinstance(value, str):
            raise GiveUp(f"http payload header {name!r} must have a string value")
        if not _HEADER_VALUE_RE.fullmatch(value):
            raise GiveUp(f"http payload header {name!r} has a non-ASCII or control character")
    return dict(raw)


def _parse_timeout(raw: Any, cap_s: float) -> float:
    if raw is None:
        return cap_s
    # bool is an int subclass; NaN fails "> 0" and so is refused too.
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw > 0:
        raise GiveUp("http payload 'timeout_s' must be a positive number")
    return min(float(raw), cap_s)


def parse_payload(payload: Any, settings: HandlerSettings) -> WebhookRequest:
    """Validate an ``http`` payload.

    Raises:
        GiveUp: the payload is invalid; the message says which field and why.
    """
    if not isinstance(payload, dict):
        raise GiveUp("http payload must be a JSON object")
    url = parse_http_url(payload.get("url"), "http payload 'url'")
    method = payload.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise GiveUp("http payload 'method' must be POST, PUT or PATCH")
    try:
        body = json.dumps(
            payload.get("body"), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except ValueError as exc:  # NaN or Infinity: Python's parser accepts them, JSON does not
        raise GiveUp(f"http payload 'body' is not valid JSON: {exc}") from exc
    return WebhookRequest(
        url=url,
        method=method.upper(),
        body=body,
        headers=_parse_headers(payload.get("headers")),
        timeout_s=_parse_timeout(payload.get("timeout_s"), settings.webhook_timeout_s),
    )


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-TaskForge-Signature`` value for ``body`` signed at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def _request_headers(webhook: WebhookRequest, ctx: TaskContext) -> httpx.Headers:
    headers = httpx.Headers(webhook.headers)
    headers.setdefault("Content-Type", "application/json")
    headers["Idempotency-Key"] = ctx.task_id
    headers["X-TaskForge-Task-Id"] = ctx.task_id
    headers["X-TaskForge-Attempt"] = str(ctx.attempt)
    if ctx.traceparent:
        headers["traceparent"] = ctx.traceparent
    secret = ctx.settings.webhook_secret
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature_header(
            secret.get_secret_value(), webhook.body, int(time.time())
        )
    return headers


def retry_after_s(response: httpx.Response) -> float | None:
    """The response's ``Retry-After`` in seconds, capped at an hour; None if absent or a date."""
    value = response.headers.get("Retry-After", "").strip()
    if not _RETRY_AFTER_RE.fullmatch(value):
        return None
    return min(float(value), MAX_RETRY_AFTER_S)


def raise_for_delivery_status(response: httpx.Response, what: str, body_text: str = "") -> None:
    """Return if ``response`` is 2xx, else raise what its status calls for.

    Args:
        response: the receiver's answer.
        what: who answered, for messages, e.g. ``"sms provider"``.
        body_text: the answer's body, quoted (shortened) in messages.

    Raises:
        Retry: a 429 or 503 with ``Retry-After`` in seconds.
        WebhookRetryableError: another 408, 429 or 5xx: the receiver may accept it later.
        GiveUp: any other status: sending the same request again cannot help.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"{what} answered {status} {response.reason_phrase}".rstrip()
    if 300 <= status < 400:
        detail += " (redirects are not followed: use the final URL)"
    # One line, short: error messages are stored on the task record.
    snippet = " ".join(body_text.split())[:200]
    if snippet:
        detail += f": {snippet}"
    if status in _RETRYABLE_4XX or status >= 500:
        delay_s = retry_after_s(response) if status in _RETRY_AFTER_STATUSES else None
        if delay_s is not None:
            raise Retry(detail, delay_s=delay_s)
        raise WebhookRetryableError(detail)
    raise GiveUp(detail)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:  # the receiver named a charset Python does not know
        return data.decode("utf-8", errors="replace")


async def send_checked(
    client: httpx.AsyncClient, request: httpx.Request, what: str
) -> tuple[httpx.Response, str]:
    """Send ``request``, read at most 64 KiB of the answer, and raise unless it is 2xx.

    Returns:
        The response (its body already closed) and the text read from it.

    Raises:
        WebhookRetryableError: a network error or timeout, or a retryable status.
        Retry, GiveUp: see :func:`raise_for_delivery_status`.
    """
    try:
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            data = await _read_capped(response, MAX_RESPONSE_BYTES)
        finally:
            await response.aclose()
    except httpx.TransportError as exc:
        raise WebhookRetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
    text = _decode(data, response.charset_encoding)
    raise_for_delivery_status(response, what, text)
    return response, text


@handler("http")
async def http(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    """Send the payload's JSON body to its URL; see the module docstring for the contract."""
    if not isinstance(ctx.http, GuardedClient):
        # Fail closed: on a plain client any task could reach the worker's own network.
        raise GiveUp("http handler refuses to send: its client has no egress guard")
    webhook = parse_payload(payload, ctx.settings)
    request = ctx.http.build_request(
        webhook.method,
        webhook.url,
        content=webhook.body,
        headers=_request_headers(webhook, ctx),
        timeout=webhook.timeout_s,
    )
    response, text = await send_checked(ctx.http, request, f"webhook receiver {webhook.url.host}")
    result: dict[str, Any] = {"status": response.status_code}
    if ctx.settings.http_result_body_chars:
        result["body"] = text[: ctx.settings.http_result_body_chars]
    return result
