"""The task model: what producers send, what Redis stores, what the status API returns."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskforge import fastjson
from taskforge.keys import validate_queue_name

#: Task type names: they become metric labels, so they are short and plain.
TASK_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"

#: Furthest a task may be put off, by ``delay_s`` or by ``eta`` alike.
MAX_DELAY_S = 86_400 * 365

#: Default nesting limit of request bodies (``TASKFORGE_MAX_JSON_DEPTH``).
DEFAULT_MAX_JSON_DEPTH = 64

#: Deepest JSON value ever stored or shown: pydantic's serialiser gives up at 255 levels,
#: counted from the response's root, so a stored value keeps well clear of it.
MAX_STORED_JSON_DEPTH = 200


class JsonFault(ValueError):
    """A JSON value TaskForge refuses: too deep, a non-finite number, or not valid Unicode.

    ``path`` locates the offending value (object keys and array indexes from the root).
    """

    def __init__(self, path: tuple[str | int, ...], message: str, kind: str) -> None:
        super().__init__(message)
        self.path = path
        self.kind = kind


#: A lone surrogate ("\\ud800" in JSON) decodes to a str that has no UTF-8 form: Redis
#: clients and every JSON encoder downstream refuse it.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_text(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def check_json(value: Any, max_depth: int) -> None:
    """Refuse what cannot be stored and shown again: the one check of every JSON value.

    Raises:
        JsonFault: a container nested deeper than ``max_depth``, a NaN or infinite number
            (also a literal too large for a double, such as ``1e400``), or a lone surrogate.
    """
    if isinstance(value, dict | list):
        _check_container(value, max_depth, max_depth)
    else:
        _check_scalar(value)


def _check_scalar(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise JsonFault((), "numbers must be finite", "json_non_finite")
    if isinstance(value, str) and _bad_text(value):
        raise JsonFault((), "text is not valid Unicode (lone surrogate)", "json_invalid_text")


def _check_container(
    container: dict[str, Any] | list[Any], levels_left: int, max_depth: int
) -> None:
    # Recursion is bounded by max_depth; the path is built only on the way out of a fault,
    # so that the common case (nothing wrong) costs one type test per value.
    if levels_left <= 0:
        raise JsonFault((), f"nested deeper than {max_depth} levels", "json_too_deep")
    pairs = container.items() if isinstance(container, dict) else enumerate(container)
    for key, child in pairs:
        try:
            if isinstance(key, str) and _bad_text(key):
                raise JsonFault((), "a key is not valid Unicode", "json_invalid_text")
            if isinstance(child, dict | list):
                _check_container(child, levels_left - 1, max_depth)
            elif isinstance(child, float | str):
                _check_scalar(child)
        except JsonFault as fault:
            fault.path = (key, *fault.path)
            raise


#: A \uD800-\uDFFF escape: the only way a lone surrogate gets into valid UTF-8 JSON. Matching
#: just these (not every \u escape, which ensure_ascii clients send for any non-ASCII text)
#: keeps the full walk off the common path; a false match only costs that walk.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def loads_checked(body: bytes, max_depth: int) -> Any:
    """Parse a request body strictly: UTF-8, then :func:`check_json`.

    Raises:
        JsonFault: the body is not UTF-8, not JSON, or holds a value :func:`check_json` refuses.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonFault((), f"the body is not UTF-8 (byte {exc.start})", "json_invalid") from None
    odd_numbers: list[str] = []

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):  # 1e400: too large for a double
            odd_numbers.append(literal)
        return value

    def constant(name: str) -> float:
        odd_numbers.append(name)
        return float(name)

    try:
        value = json.loads(text, parse_float=number, parse_constant=constant)
    except RecursionError:
        raise JsonFault((), f"nested deeper than {max_depth} levels", "json_too_deep") from None
    except ValueError as exc:  # JSONDecodeError, and integers with too many digits
        raise JsonFault((), f"invalid JSON: {exc}", "json_invalid") from None
    if odd_numbers or _SURROGATE_ESCAPE.search(body) or not is_shallow(body, max_depth):
        check_json(value, max_depth)  # the walk that names the offending value
    return value


#: Every byte but the four brackets, deleted to see a body's nesting.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Objects and arrays nest alike: one kind of bracket lets one ``replace`` remove one level.
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def is_shallow(body: bytes, max_depth: int) -> bool:
    """Whether valid JSON ``body`` surely nests at most ``max_depth`` levels.

    The walk of :func:`check_json` costs about a microsecond a value (a quarter of a second
    for a 1 MiB payload); this runs at C speed. Brackets inside strings must not count (a
    crafted string could pair with real brackets and hide nesting), so strings are cut out
    where that is trivial: when no quote is escaped, quotes alternate opening and closing.
    """
    if b'\\"' in body:
        return False  # an escaped quote: let the walk decide
    outside_strings = b"".join(body.split(b'"')[::2])
    brackets = outside_strings.translate(_ONE_KIND, _NOT_BRACKETS)
    # Each round removes the innermost pairs: what is left after max_depth rounds is deeper.
    for _ in range(max_depth):
        if not brackets:
            return True
        brackets = brackets.replace(b"[]", b"")
    return not brackets


#: Longest idempotency key a client may send.
MAX_IDEMPOTENCY_KEY_CHARS = 200

#: A stored idempotency key: the client's scope (its API key id, or ``_`` for internal
#: callers), a colon, then the key the client sent.
_SCOPED_KEY_RE = re.compile(r"^(?:[0-9a-f]{12}|_):(.+)$", re.DOTALL)


def scoped_idempotency_key(scope: str, key: str) -> str:
    """The stored form of ``key`` sent by client ``scope``."""
    return f"{scope}:{key}"


def client_idempotency_key(stored: str) -> str:
    """The key as its client sent it (keys stored before scoping are returned as they are)."""
    match = _SCOPED_KEY_RE.match(stored)
    return match[1] if match else stored


def check_eta(value: datetime | None) -> datetime | None:
    """An ETA must name its timezone and lie within :data:`MAX_DELAY_S` from now."""
    if value is None:
        return value
    if value.tzinfo is None:
        raise ValueError("eta must include a timezone, e.g. 2030-01-01T00:00:00Z")
    if value > datetime.now(UTC) + timedelta(seconds=MAX_DELAY_S):
        raise ValueError(f"eta must be at most {MAX_DELAY_S} s (one year) from now")
    return value


class TaskState(StrEnum):
    """Lifecycle states; see docs/architecture.md#task-lifecycle for the transitions."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for states a task never leaves (the DLQ's requeue starts a new life)."""
        return self in (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED)


class DeadReason(StrEnum):
    """Why a task was dead-lettered; every DLQ entry carries one."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"
    UNKNOWN_TASK_TYPE = "unknown_task_type"
    NON_RETRYABLE = "non_retryable"
    #: The stored record could not be read back (payload, retry options), so it cannot run.
    UNREADABLE_RECORD = "unreadable_record"


class BackoffPolicy(BaseModel):
    """How long to wait before retry ``n``: fixed, or exponential with full jitter and a cap."""

    # Strict: a retry policy is never guessed from a string or a boolean.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    kind: Literal["fixed", "exponential"] = "exponential"
    base_s: Annotated[float, Field(ge=0, le=86_400 * 7)] = 1.0
    cap_s: Annotated[float, Field(ge=0, le=86_400 * 30)] = 300.0
    jitter: bool = True


class TaskSpec(BaseModel):
    """A task as a producer submits it.

    Options left as ``None`` fall back to the handler's declared defaults, then to the service
    settings (see :func:`taskforge.retry.resolve_policy`).
    """

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(pattern=TASK_TYPE_PATTERN, description="Handler name.")]
    payload: Any = Field(default_factory=dict, description="Any JSON value.")
    queue: str = Field(default="default", description="Queue name.")
    delay_s: Annotated[float | None, Field(ge=0, le=MAX_DELAY_S)] = None
    eta: datetime | None = Field(default=None, description="Run at (timezone-aware) time.")
    max_retries: Annotated[int | None, Field(ge=0, le=1000)] = None
    backoff: BackoffPolicy | None = None
    timeout_s: Annotated[float | None, Field(gt=0, le=86_400)] = None
    #: Room for the client scope that :func:`scoped_idempotency_key` adds.
    idempotency_key: Annotated[
        str | None, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS + 16)
    ] = None
    traceparent: Annotated[str | None, Field(max_length=256)] = None

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        return validate_queue_name(value)

    @field_validator("eta")
    @classmethod
    def _eta_within_cap(cls, value: datetime | None) -> datetime | None:
        return check_eta(value)

    @model_validator(mode="after")
    def _one_of_delay_eta(self) -> TaskSpec:
        if self.delay_s is not None and self.eta is not None:
            raise ValueError("give either delay_s or eta, not both")
        return self

    def due_ms(self, now_ms: int) -> int:
        """Epoch milliseconds at which the task becomes runnable (``<= now_ms`` means now)."""
        if self.eta is not None:
            return int(self.eta.timestamp() * 1000)
        if self.delay_s:
            return now_ms + int(self.delay_s * 1000)
        return 0

    def payload_json(self) -> str:
        """The payload serialised as compact JSON, the form stored in Redis."""
        return fastjson.dumps(self.payload)


#: What a stored value that cannot be shown is replaced by (see ``TaskRecord.unreadable``).
UNREADABLE = "<unreadable>"


class TaskEvent(BaseModel):
    """One entry of a task's event log."""

    at: datetime
    event: str
    worker: str | None = None
    error: str | None = None
    attempt: int | None = None
    delay_s: float | None = None


class TaskRecord(BaseModel):
    """A task as stored, returned by the status API."""

    id: str
    queue: str
    type: str
    state: TaskState
    payload: Any = None
    attempts: int = 0
    max_retries: int | None = None
    backoff: BackoffPolicy | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None
    created_at: datetime | None = None
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    last_error: str | None = None
    traceback: str | None = None
    result: Any = None
    dead_reason: DeadReason | None = None
    cancel_requested: bool = False
    traceparent: str | None = None
    events: list[TaskEvent] = Field(default_factory=list)
    unreadable: dict[str, str] | None = Field(
        default=None,
        description="Stored fields that could not be shown, with the reason; each is replaced "
        f"by {UNREADABLE!r} (or its default).",
    )
