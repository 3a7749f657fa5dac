"""Task ids: time-ordered, random, and carrying their queue.

An id looks like ``emails.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3``: the queue name, a dot, 12 hex
digits of milliseconds since the epoch and 20 random hex digits. Carrying the queue lets the
status API find the record's hash-tagged key from the id alone, without a global index that
would sit in another cluster slot.
"""

from __future__ import annotations

import os
import re
import time

from taskforge.keys import validate_queue_name

#: Shape of the part after the queue name.
_SUFFIX_RE = re.compile(r"^[0-9a-f]{32}$")


def new_task_id(queue: str) -> str:
    """Return a fresh id for a task on ``queue``."""
    return new_task_ids(queue, 1)[0]


def new_task_ids(queue: str, count: int) -> list[str]:
    """Return ``count`` fresh ids for tasks on ``queue`` (one system call for the randomness)."""
    prefix = f"{queue}.{time.time_ns() // 1_000_000:012x}"
    random = os.urandom(10 * count).hex()
    return [prefix + random[20 * i : 20 * i + 20] for i in range(count)]


def queue_of(task_id: str) -> str:
    """Return the queue encoded in ``task_id``.

    Raises:
        ValueError: ``task_id`` is not a TaskForge task id.
    """
    queue, sep, suffix = task_id.rpartition(".")
    if not sep or not _SUFFIX_RE.fullmatch(suffix):
        raise ValueError(f"invalid task id {task_id!r}")
    return validate_queue_name(queue)
