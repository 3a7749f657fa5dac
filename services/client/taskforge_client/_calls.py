"""What the sync and async clients share: configuration, requests as data, retry decisions.

Each API operation is built once here as a :class:`Call` (method, path, body, how to read the
answer); :class:`taskforge_client.TaskForge` and :class:`taskforge_client.AsyncTaskForge`
only differ in how they send it and how they sleep between attempts.
"""

from __future__ import annotations

import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from taskforge_client.errors import ConfigurationError, Unreachable
from taskforge_client.models import NewTask

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: The gateway ``make up`` starts; used when neither an argument nor TASKFORGE_URL gives one.
DEFAULT_URL = "http://127.0.0.1:8080"
#: The server's default ``TASKFORGE_MAX_BATCH_SIZE``; a smaller limit is learnt from its 422.
DEFAULT_CHUNK_SIZE = 1000
#: The gateway refused before forwarding: resending is always safe.
RETRY_STATUSES = frozenset({429})
#: Redis or the api failed or went slow, possibly after acting (a script that ran before the
#: connection dropped): resent only when doing it twice is harmless.
RETRY_IF_IDEMPOTENT = frozenset({502, 503, 504})
#: Tells the gateway's logs which client (and version) sent a request.
USER_AGENT = f"taskforge-client/{version('taskforge-client')}"
_BATCH_LIMIT = re.compile(r"at most (\d+) tasks")


@dataclass(frozen=True)
class Config:
    """Where the gateway is and how to authenticate; arguments win over the environment."""

    url: str
    api_key: str

    @classmethod
    def resolve(cls, url: str | None, api_key: str | None) -> Config:
        """``url`` or ``TASKFORGE_URL`` (else :data:`DEFAULT_URL`); ``api_key`` or its variable.

        Raises:
            ConfigurationError: no API key, or a URL that is not http(s).
        """
        url = url or os.environ.get("TASKFORGE_URL") or DEFAULT_URL
        api_key = api_key or os.environ.get("TASKFORGE_API_KEY")
        if not api_key:
            raise ConfigurationError("no API key: pass api_key or set TASKFORGE_API_KEY")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the URL must start with http:// or https://, got {url!r}")
        return cls(url.rstrip("/"), api_key)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries: ``Retry-After`` when the server gives one, else jittered backoff."""

    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    #: A longer ``Retry-After`` is not waited for: the error is raised at once.
    max_wait_s: float = 60.0

    def after_response(
        self, response: httpx.Response, attempt: int, idempotent: bool
    ) -> float | None:
        """Seconds to wait before resending, or None to give up and raise."""
        status = response.status_code
        if attempt >= self.max_retries or not (
            status in RETRY_STATUSES or (idempotent and status in RETRY_IF_IDEMPOTENT)
        ):
            return None
        delay = retry_after_s(response)
        if delay is None:
            return self._backoff(attempt)
        return delay if delay <= self.max_wait_s else None

    def after_error(
        self, error: httpx.TransportError, attempt: int, idempotent: bool
    ) -> float | None:
        """Seconds to wait before resending after no answer, or None to give up."""
        if attempt >= self.max_retries:
            return None
        # A refused connection never reached the server; anything later may have been acted on.
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout) or idempotent:
            return self._backoff(attempt)
        return None

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2**attempt))


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and how to read its successful answer."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: Mapping[str, str | int | bool] | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Safe to resend when the first try may have been acted on (timeout, 504).
    idempotent: bool = False

    def request(self, client: httpx.Client | httpx.AsyncClient, config: Config) -> httpx.Request:
        """The request, with absolute URL and credentials (a caller's client needs no base URL)."""
        headers = {
            "Authorization": f"Bearer {config.api_key}",
            "User-Agent": USER_AGENT,
            **self.headers,
        }
        return client.build_request(
            self.method, config.url + self.path, params=self.params, json=self.json, headers=headers
        )


def model(kind: type[M]) -> Callable[[httpx.Response], M]:
    """A reader that validates the answer's JSON as ``kind``."""
    return lambda response: kind.model_validate_json(response.content)


def nothing(_response: httpx.Response) -> None:
    """The reader of answers without a body (204)."""


def unreachable(error: httpx.TransportError, config: Config) -> Unreachable:
    """The error raised when no answer came."""
    reason = str(error) or type(error).__name__
    return Unreachable(f"no answer from {config.url}: {reason}")


def new_idempotency_key() -> str:
    """A fresh key: one per enqueue call, so resending after a lost answer cannot duplicate."""
    return uuid.uuid4().hex


def batch_items(tasks: Iterable[NewTask | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Request items, each with an idempotency key (its own, or a fresh one)."""
    items = []
    for task in tasks:
        item = (task if isinstance(task, NewTask) else NewTask.model_validate(task)).body()
        item.setdefault("idempotency_key", new_idempotency_key())
        items.append(item)
    return items


def chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_limit(detail: str | None) -> int | None:
    """The server's batch limit, from the 422 that refused a larger batch."""
    match = _BATCH_LIMIT.search(detail or "")
    return int(match[1]) if match else None


def query(**values: Any) -> dict[str, str | int | bool]:
    """Query parameters, None values left out and datetimes as RFC 3339."""
    out: dict[str, str | int | bool] = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


class Poll:
    """The pace of ``wait``: short intervals growing to ``max_interval_s``, until a deadline."""

    def __init__(
        self, timeout_s: float, interval_s: float, max_interval_s: float, now: float
    ) -> None:
        self.deadline = now + timeout_s
        self.interval_s = interval_s
        self.max_interval_s = max_interval_s

    def next_delay(self, now: float) -> float | None:
        """Seconds until the next look, or None once the deadline has passed."""
        left = self.deadline - now
        if left <= 0:
            return None
        delay = min(self.interval_s, left)
        self.interval_s = min(self.max_interval_s, self.interval_s * 1.5)
        return delay


def rechunk(error_detail: str | None, size: int) -> int | None:
    """A smaller chunk size when the server refused a batch as too large, else None."""
    limit = batch_limit(error_detail)
    return limit if limit is not None and 0 < limit < size else None
