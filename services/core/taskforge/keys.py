"""Every Redis key TaskForge uses, built in one place.

All keys of one queue share the hash tag ``{<queue>}`` so that every multi-key Lua script
touches a single Redis Cluster slot (invariant 7, docs/architecture.md#invariants). The only
keys without a queue tag are the global registries, which no script touches together with queue
keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskforge.errors import QueueNotAllowed

#: Prefix of every key; change it only together with any external tooling that reads keys.
PREFIX = "tf"

#: Consumer group every worker reads the queue stream through (KEDA's trigger names it too).
CONSUMER_GROUP = "workers"

#: Allowed queue names: the name goes into key hash tags, task ids and metric labels.
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: Set of every live queue: registered by its first enqueue, removed when the scheduler reaps it
#: (empty and idle). Bounded by the queue limit; the scheduler and the queue listing walk it.
QUEUES_REGISTRY = f"{PREFIX}:queues"

#: Metric label (and ``GET /metrics`` entry) that aggregates the queues beyond the labelled
#: ones; reserved, so no real queue can take it.
OTHER_QUEUES = "_other"

#: Default number of live queues a deployment accepts.
DEFAULT_MAX_QUEUES = 1000

#: Hash mapping every API key id to the SHA-256 hex digest of its key.
APIKEYS_INDEX = f"{PREFIX}:apikeys"


def apikey_record_key(digest: str) -> str:
    """Hash holding one API key's record, found by the SHA-256 hex digest of the key."""
    return f"{PREFIX}:apikey:{digest}"


def authfail_key(client: str) -> str:
    """Counter of failed authentications of one client address in the current window."""
    return f"{PREFIX}:authfail:{client}"


def ratelimit_key(key_id: str) -> str:
    """String holding the theoretical arrival time of API key ``key_id``'s next request."""
    return f"{PREFIX}:ratelimit:{key_id}"


def validate_queue_name(queue: str) -> str:
    """Return ``queue`` unchanged if it is a valid queue name.

    Raises:
        ValueError: the name is empty, too long or has characters outside ``[A-Za-z0-9_-]``.
    """
    if not QUEUE_NAME_RE.fullmatch(queue):
        raise ValueError(
            f"invalid queue name {queue!r}: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-'"
        )
    return queue


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """Which queues may exist: at most ``max_queues`` live ones, named to match ``pattern``."""

    max_queues: int = DEFAULT_MAX_QUEUES
    #: Regular expression a queue name must match in full; None allows every valid name.
    pattern: str | None = None

    def check_name(self, queue: str) -> None:
        """Refuse a name this deployment does not allow (checked on every enqueue).

        Raises:
            QueueNotAllowed: the name is reserved or does not match :attr:`pattern`.
        """
        if queue == OTHER_QUEUES:
            raise QueueNotAllowed(f"queue name {queue!r} is reserved")
        if self.pattern is not None and not re.fullmatch(self.pattern, queue):
            raise QueueNotAllowed(
                f"queue {queue!r} is not allowed here: names must match {self.pattern!r}"
            )


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue; every one carries the queue's hash tag."""

    queue: str

    @property
    def base(self) -> str:
        """Common prefix of this queue's keys, also passed to scripts that build task keys."""
        return f"{PREFIX}:{{{self.queue}}}"

    @property
    def stream(self) -> str:
        """Stream of ready tasks, consumed through :data:`CONSUMER_GROUP`."""
        return f"{self.base}:stream"

    @property
    def scheduled(self) -> str:
        """Sorted set of task ids due later (delayed, ETA, retry wait), scored by due time ms."""
        return f"{self.base}:scheduled"

    @property
    def leases(self) -> str:
        """Sorted set of running task ids, scored by lease deadline ms."""
        return f"{self.base}:leases"

    @property
    def dead(self) -> str:
        """Sorted set of dead-lettered task ids, scored by the time they died (ms)."""
        return f"{self.base}:dead"

    @property
    def meta(self) -> str:
        """Hash marking the queue as registered (``created_ms``, ``last_ms`` of its last enqueue).

        Enqueue writes only while it exists, and reaping deletes it, both inside the queue's
        slot: that is what makes reaping safe against a concurrent enqueue.
        """
        return f"{self.base}:meta"

    @property
    def counters(self) -> str:
        """Hash of monotonically increasing per-queue counters (enqueued, succeeded, ...)."""
        return f"{self.base}:counters"

    def task(self, task_id: str) -> str:
        """Hash holding one task's record."""
        return f"{self.base}:task:{task_id}"

    def events(self, task_id: str) -> str:
        """List of one task's lifecycle events (JSON strings), oldest first."""
        return f"{self.base}:events:{task_id}"

    def idempotency(self, key: str) -> str:
        """String mapping an idempotency key to the task id it created."""
        return f"{self.base}:idem:{key}"

    def all_static(self) -> list[str]:
        """The fixed keys of the queue, for slot checks and stats."""
        return [self.stream, self.scheduled, self.leases, self.dead, self.counters]


def key_slot(key: str) -> int:
    """Redis Cluster hash slot of ``key`` (CRC16/XMODEM of the hash tag, mod 16384)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc % 16384
