"""JSON on the hot path: orjson where it gives the same value, the standard library otherwise.

orjson parses and encodes several times faster than :mod:`json`, but not integers beyond 64 bits,
which JSON allows and :mod:`json` handles: orjson refuses to encode them and, worse, parses them
as floats. Documents that may hold one (a run of 20 digits or more: 2**64 has 20) take the
standard library's path, so every document gives the value it gave before.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: Digits enough to pass 64 bits (inside a string too: a false alarm only costs the slow path).
_LONG_NUMBER = re.compile(r"\d{20}")


def loads(text: str) -> Any:
    """Parse ``text``; raises ``ValueError`` (``json.JSONDecodeError``) on invalid JSON."""
    if _LONG_NUMBER.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON of a JSON-native ``value`` (dicts, lists, strings, numbers, bools, None)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"))
