"""JSON on the hot path: orjson where it gives the same value, the standard library otherwise.

orjson parses and encodes several times faster than :mod:`json`, but refuses integers beyond 64
bits, which JSON allows and :mod:`json` handles: those (rare) documents take the standard
library's path, so every document that worked before still does, to the same value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    """Parse ``text``; raises ``ValueError`` (``json.JSONDecodeError``) on invalid JSON."""
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
