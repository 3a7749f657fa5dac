"""Redis settings TaskForge is measured and tested with, beyond the queue-safety ones.

``hash-max-listpack-value 1024``: Redis keeps a hash in its compact listpack encoding only while
every value is at most ``hash-max-listpack-value`` bytes (64 by default); one longer value turns
the whole hash into a hash table. A task record holds its payload, so with the default a task
with a 100-byte payload costs about 1,100 bytes of hash instead of about 400 (``make bench``,
"Redis memory per queued 100-byte task"). Lookups in a listpack scan its ~20 fields, which stays
cheap at this size. The chart's redis.conf sets the same value (a chart test checks they agree);
a Redis you bring yourself should set it too (k8s/OPERATIONS.md).
"""

from __future__ import annotations

from typing import Final

#: ``redis.conf`` directives, name to value.
TUNING: Final[dict[str, str]] = {"hash-max-listpack-value": "1024"}


def server_args() -> list[str]:
    """:data:`TUNING` as ``redis-server`` command-line arguments."""
    return [arg for name, value in TUNING.items() for arg in (f"--{name}", value)]
