"""The worker's side: fetch under a lease, wait for work, heartbeat, and finish in batches."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal

from taskforge import tracing
from taskforge.broker.connection import Broker, translate_errors
from taskforge.broker.fields import FETCH_WIDTH
from taskforge.keys import QueueKeys
from taskforge.models import DeadReason

OutcomeKind = Literal["succeeded", "retry", "dead", "cancelled", "giveback"]


@dataclass(slots=True)
class FetchedTask:
    """A task a worker now holds under a lease."""

    id: str
    queue: str
    type: str
    payload_json: str
    attempts: int
    max_retries: int | None
    backoff_json: str
    timeout_s: float | None
    traceparent: str
    #: Why a stored option could not be decoded; execute() dead-letters such a task unrun.
    unreadable: str | None = None
    #: Fetches by tracing workers so far, this one included (0: this worker does not trace).
    deliveries: int = 0


@dataclass(slots=True)
class Outcome:
    """What became of one attempt; ``finish`` records a batch of them. Never changed once made.

    A ``retry`` carries its delay and a ``dead`` its reason, and nothing else carries either:
    the constructor refuses any other combination, so a malformed outcome fails where it is
    made, not inside a batch that finish.lua would refuse whole. Not a frozen dataclass only
    because one is made per attempt on the hot path, where frozen's ``__init__`` (one
    ``object.__setattr__`` per field) costs more than the whole check.
    """

    task_id: str
    kind: OutcomeKind
    detail: str = ""
    traceback: str = ""
    _: KW_ONLY
    #: Milliseconds to wait before the retry; set for ``retry`` only.
    delay_ms: int | None = None
    #: Why the task is dead-lettered; set for ``dead`` only.
    dead_reason: DeadReason | None = None
    #: The attempt this outcome belongs to; 0 skips the check (tests and tools only).
    attempt: int = 0

    def __post_init__(self) -> None:
        if (self.kind == "retry") != (self.delay_ms is not None) or (self.kind == "dead") != (
            self.dead_reason is not None
        ):
            raise ValueError(
                f"outcome {self.kind!r}: a retry needs delay_ms, a dead needs dead_reason, "
                f"and no other outcome takes either (got {self.delay_ms!r}, {self.dead_reason!r})"
            )
        if self.delay_ms is not None and self.delay_ms < 0:
            raise ValueError(f"retry delay must be >= 0 ms, got {self.delay_ms}")

    def args(self) -> tuple[str, str, str, str, str, str]:
        """This outcome as finish.lua's group (:data:`~taskforge.broker.fields.OUTCOME_GROUP`).

        The delay and the dead reason share one slot on the wire: at most one is ever set.
        """
        if self.delay_ms is not None:
            extra = str(self.delay_ms)
        else:
            extra = "" if self.dead_reason is None else self.dead_reason.value
        return (self.task_id, self.kind, self.detail, self.traceback, extra, str(self.attempt))


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _optional_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def _fetched(queue: str, group: list[Any]) -> FetchedTask:
    """The task one :data:`~taskforge.broker.fields.FETCH_GROUP` of fetch.lua's reply holds."""
    task_id, type_, payload, attempts, max_retries, backoff, timeout_s, traceparent, sent = group
    unreadable = None
    try:
        max_retries, timeout_s = _optional_int(max_retries), _optional_float(timeout_s)
    except (ValueError, TypeError) as exc:
        # One corrupted record must not fail the batch (its siblings are leased already).
        max_retries, timeout_s = None, None
        unreadable = f"stored max_retries or timeout_s unreadable: {exc}"
    return FetchedTask(
        task_id,
        queue,
        type_,
        payload,
        int(attempts),
        max_retries,
        backoff or "",
        timeout_s,
        traceparent or "",
        unreadable,
        int(sent),
    )


async def fetch(
    broker: Broker, queue: str, worker_id: str, count: int, lease_ms: int
) -> tuple[list[FetchedTask], int, str]:
    """Start up to ``count`` tasks of ``queue`` under a lease held by ``worker_id``.

    Returns:
        The started tasks, the number of stream entries read (cancelled ones included), and,
        when nothing was read, the group's last-delivered id to block on.
    """
    keys = QueueKeys(queue)
    async with translate_errors("fetch"):
        reply = await broker.scripts.run(
            "fetch",
            [keys.stream, keys.leases, keys.base],
            [broker.group, worker_id, count, lease_ms, "1" if tracing.enabled() else "0"],
        )
    tasks = [_fetched(queue, reply[i : i + FETCH_WIDTH]) for i in range(2, len(reply), FETCH_WIDTH)]
    return tasks, int(reply[0]), reply[1]


async def wait_for_work(broker: Broker, last_ids: dict[str, str], block_ms: int) -> bool:
    """Block until a stream gets an entry newer than its last-delivered id, or time out.

    Reading with plain XREAD delivers nothing to the group: the fetch script still decides who
    gets each task. Returns True if some stream has new entries.
    """
    streams = {QueueKeys(queue).stream: last_id for queue, last_id in last_ids.items()}
    async with translate_errors("wait_for_work"):
        reply = await broker.redis.xread(streams, count=1, block=block_ms)  # type: ignore[arg-type]
    return bool(reply)


async def heartbeat(
    broker: Broker, queue: str, worker_id: str, task_ids: Iterable[str], lease_ms: int
) -> tuple[list[str], list[str]]:
    """Extend the leases on ``task_ids``; returns (lost ids, ids asked to cancel)."""
    ids = list(task_ids)
    if not ids:
        return [], []
    keys = QueueKeys(queue)
    async with translate_errors("heartbeat"):
        lost, cancel = await broker.scripts.run(
            "heartbeat", [keys.leases, keys.base], [worker_id, lease_ms, *ids]
        )
    return list(lost), list(cancel)


async def finish(
    broker: Broker,
    queue: str,
    worker_id: str,
    outcomes: Iterable[Outcome],
    *,
    task_ttl_s: int,
    dead_ttl_s: int,
) -> list[str]:
    """Record a batch of outcomes of one queue in one script call; returns stale task ids."""
    flat = [field for outcome in outcomes for field in outcome.args()]
    if not flat:
        return []
    keys = QueueKeys(queue)
    async with translate_errors("finish"):
        stale = await broker.scripts.run(
            "finish",
            [keys.stream, keys.leases, keys.scheduled, keys.dead, keys.counters, keys.base],
            [broker.group, worker_id, task_ttl_s * 1000, dead_ttl_s * 1000, *flat],
        )
    return list(stale)
