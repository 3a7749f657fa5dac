"""Read the keys of values.yaml together with the comment lines written above each one.

PyYAML drops comments, so the keys are found line by line: a key is ``<indent><name>:`` outside
list items and block scalars, and its path comes from the indentation of the keys around it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_KEY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z0-9_.\-/]+|\"[^\"]+\"):(?:\s|$)")


@dataclass(frozen=True)
class ValuesKey:
    """One key of values.yaml: its dotted path, line number and the comment block above it."""

    path: tuple[str, ...]
    line: int
    comment: list[str]

    @property
    def dotted(self) -> str:
        """The path as ``a.b.c``."""
        return ".".join(self.path)

    @property
    def description(self) -> str:
        """The comment above the key, without its ``Example:`` lines, as one paragraph."""
        return " ".join(line for line in self.comment if not line.startswith("Example:")).strip()


def values_keys(path: Path) -> list[ValuesKey]:
    """Every mapping key of a values file, in file order.

    Keys inside lists (``- name: x``) are not reported: the chart's values.yaml keeps lists to
    scalars or empty defaults so that every configurable key is a mapping key.
    """
    keys: list[ValuesKey] = []
    stack: list[tuple[int, str]] = []  # (indent, name) of the enclosing keys
    comment: list[str] = []
    list_indent: int | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip(" "))
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        if list_indent is not None and indent > list_indent:
            comment = []
            continue
        list_indent = None
        if stripped.startswith("- "):
            list_indent = indent
            comment = []
            continue
        match = _KEY.match(raw)
        if match is None:
            comment = []
            continue
        name = match.group("name").strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        keys.append(ValuesKey((*tuple(n for _, n in stack), name), number, comment))
        stack.append((indent, name))
        comment = []
        if stripped.endswith(("|", "|-", ">", ">-")):
            list_indent = indent  # a block scalar: skip its lines like a list's
    return keys
