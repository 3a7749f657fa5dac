"""The task hash's fields and the positional groups the hot-path scripts exchange with Python.

Every field of ``tf:{q}:task:<id>`` is one constant here, described in :data:`TASK_FIELDS`
with what it holds and which scripts write it. ``tests/unit/taskforge/test_contracts.py``
parses every Lua script and checks that each field a script reads or writes on a task key is
in the table, that each field's writers are exactly the scripts listed, and that each group's
width and order agree with the script's header and its ``local FIELDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What a task-hash field holds, and which scripts write it (includes expanded)."""

    meaning: str
    writers: frozenset[str]


def _by(*scripts: str) -> frozenset[str]:
    return frozenset(scripts)


ID: Final = "id"
TYPE: Final = "type"
PAYLOAD: Final = "payload"
ATTEMPTS: Final = "attempts"
MAX_RETRIES: Final = "max_retries"
BACKOFF: Final = "backoff"
TIMEOUT_S: Final = "timeout_s"
IDEM_KEY: Final = "idem_key"
TRACEPARENT: Final = "traceparent"
CREATED_MS: Final = "created_ms"
STATE: Final = "state"
ETA_MS: Final = "eta_ms"
MSG: Final = "msg"
STARTED_MS: Final = "started_ms"
WORKER: Final = "worker"
ERROR: Final = "error"
TRACEBACK: Final = "traceback"
RESULT: Final = "result"
FINISHED_MS: Final = "finished_ms"
REASON: Final = "reason"
CANCEL: Final = "cancel"
ABANDONED: Final = "abandoned"
DELIVERIES: Final = "deliveries"

#: Scripts that make a task ready (pushReady) and so write its state and stream entry id.
_READY = ("enqueue", "finish", "reclaim", "promote", "dlq_requeue")

#: Every field of a task hash; nothing else is ever written to one.
TASK_FIELDS: Final[dict[str, FieldInfo]] = {
    ID: FieldInfo("the task id, <queue>.<ulid>", _by("enqueue")),
    TYPE: FieldInfo("handler name", _by("enqueue")),
    PAYLOAD: FieldInfo("payload JSON", _by("enqueue")),
    ATTEMPTS: FieldInfo(
        "started attempts: +1 per fetch, -1 per give-back, 0 on requeue",
        _by("enqueue", "fetch", "finish", "dlq_requeue"),
    ),
    MAX_RETRIES: FieldInfo("retry budget set at enqueue; empty: the handler's", _by("enqueue")),
    BACKOFF: FieldInfo("BackoffPolicy JSON set at enqueue; empty: the handler's", _by("enqueue")),
    TIMEOUT_S: FieldInfo("attempt timeout set at enqueue; empty: the handler's", _by("enqueue")),
    IDEM_KEY: FieldInfo("idempotency key (namespaced), empty when none", _by("enqueue")),
    TRACEPARENT: FieldInfo(
        "W3C traceparent of the enqueue: its send span with tracing on, else the request's",
        _by("enqueue"),
    ),
    CREATED_MS: FieldInfo("enqueue time, epoch ms (Redis clock)", _by("enqueue")),
    STATE: FieldInfo("TaskState value", _by(*_READY, "fetch", "cancel")),
    ETA_MS: FieldInfo("due time of a delayed task or a retry, epoch ms", _by("enqueue", "finish")),
    MSG: FieldInfo(
        "id of the stream entry the task holds; empty once it holds none",
        _by(*_READY, "fetch", "cancel"),
    ),
    STARTED_MS: FieldInfo("start of the current or last attempt, epoch ms", _by("fetch")),
    WORKER: FieldInfo(
        "worker running it, or that ran its last attempt; unset once given back or reclaimed",
        _by("fetch", "finish", "reclaim"),
    ),
    ERROR: FieldInfo(
        "last error, the note of a cancellation, or why the lease expired",
        _by("finish", "reclaim"),
    ),
    TRACEBACK: FieldInfo("traceback of the last failed attempt", _by("finish")),
    RESULT: FieldInfo("result JSON of the successful attempt", _by("finish")),
    FINISHED_MS: FieldInfo(
        "time it reached a terminal state, epoch ms; cleared on requeue",
        _by("finish", "cancel", "reclaim", "dlq_requeue"),
    ),
    REASON: FieldInfo(
        "DeadReason value once dead; cleared on requeue", _by("finish", "dlq_requeue")
    ),
    CANCEL: FieldInfo('"1" once a cancel was asked while it ran', _by("cancel", "dlq_requeue")),
    ABANDONED: FieldInfo(
        '"1" once a lease of it expired (its worker died)', _by("reclaim", "dlq_requeue")
    ),
    DELIVERIES: FieldInfo(
        "fetches by a tracing worker, never decremented nor reset: numbers each attempt's span "
        "(docs/tracing.md); unset while no worker traces",
        _by("fetch"),
    ),
}

#: enqueue.lua's ARGV group per task (``local FIELDS`` there). Hash field names where the slot
#: is stored as is; delay_ms and fingerprint are not stored; idempotency_key becomes idem_key.
ENQUEUE_GROUP: Final = (
    ID,
    TYPE,
    PAYLOAD,
    "delay_ms",
    MAX_RETRIES,
    BACKOFF,
    TIMEOUT_S,
    "idempotency_key",
    "fingerprint",
    TRACEPARENT,
)

#: fetch.lua's reply group per started task (attempts and deliveries are the values after the
#: fetch's +1; deliveries is 0 when the worker does not trace).
FETCH_GROUP: Final = (
    ID, TYPE, PAYLOAD, ATTEMPTS, MAX_RETRIES, BACKOFF, TIMEOUT_S, TRACEPARENT, DELIVERIES,
)  # fmt: skip

#: finish.lua's ARGV group per outcome (``local FIELDS`` there). ``extra`` carries the retry
#: delay in ms or the dead reason, never both (Outcome types them as two fields).
OUTCOME_GROUP: Final = ("id", "outcome", "detail", "traceback", "extra", "attempt")

ENQUEUE_WIDTH: Final = len(ENQUEUE_GROUP)
FETCH_WIDTH: Final = len(FETCH_GROUP)
OUTCOME_WIDTH: Final = len(OUTCOME_GROUP)
