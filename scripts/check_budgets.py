"""Enforce size budgets on Python sources.

Fails (exit status 1, one line per offender) when a module is longer than 400 lines, when a
function or method (``def`` or ``async def``, nested ones included) is longer than 60 lines
(``end_lineno - lineno + 1``, decorators not counted), or when a comment says
``noqa: C901`` (complexity must be fixed, not silenced).

Usage: python scripts/check_budgets.py [--max-module-lines N] [--max-function-lines N] PATH...
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

#: Directories never descended into.
SKIP_DIRS = frozenset(
    {"__pycache__", ".venv", "venv", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)

#: A noqa comment that names C901, alone or among other codes, in any spacing or case.
_NOQA_C901_RE = re.compile(r"#\s*noqa\s*:[^#]*\bC901\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken budget."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def iter_python_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Yield every ``*.py`` file under ``paths`` (files are yielded as given), sorted."""
    for path in paths:
        if path.is_file():
            yield path
            continue
        for candidate in sorted(path.rglob("*.py")):
            relative = candidate.relative_to(path).parts
            if not SKIP_DIRS.intersection(relative[:-1]) and candidate.is_file():
                yield candidate


class _FunctionCollector(ast.NodeVisitor):
    """Collect ``(qualified name, first line, length)`` of every function."""

    def __init__(self) -> None:
        self.functions: list[tuple[str, int, int]] = []
        self._scope: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_function(node)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        end = node.end_lineno if node.end_lineno is not None else node.lineno
        name = ".".join([*self._scope, node.name])
        self.functions.append((name, node.lineno, end - node.lineno + 1))
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()


def _noqa_c901_lines(source: str) -> list[int]:
    """Lines whose comment suppresses C901."""
    lines: list[int] = []
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    for token in tokens:
        if token.type == tokenize.COMMENT and _NOQA_C901_RE.search(token.string):
            lines.append(token.start[0])
    return lines


def check_source(
    path: Path,
    source: str,
    max_module_lines: int = MAX_MODULE_LINES,
    max_function_lines: int = MAX_FUNCTION_LINES,
) -> list[Violation]:
    """Return the budget violations of one module's ``source``."""
    violations: list[Violation] = []
    line_count = len(source.splitlines())
    if line_count > max_module_lines:
        violations.append(
            Violation(path, 1, f"module has {line_count} lines (max {max_module_lines})")
        )
    try:
        tree = ast.parse(source, filename=str(path))
        noqa_lines = _noqa_c901_lines(source)
    except (SyntaxError, tokenize.TokenError) as exc:
        line = getattr(exc, "lineno", None) or 1
        return [*violations, Violation(path, line, f"cannot parse: {exc}")]
    collector = _FunctionCollector()
    collector.visit(tree)
    for name, lineno, length in collector.functions:
        if length > max_function_lines:
            violations.append(
                Violation(
                    path,
                    lineno,
                    f"function {name!r} has {length} lines (max {max_function_lines})",
                )
            )
    violations.extend(
        Violation(path, line, "'noqa: C901' is not allowed: reduce the complexity instead")
        for line in noqa_lines
    )
    return violations


def check_paths(
    paths: Iterable[Path],
    max_module_lines: int = MAX_MODULE_LINES,
    max_function_lines: int = MAX_FUNCTION_LINES,
) -> list[Violation]:
    """Return the budget violations of every Python file under ``paths``."""
    violations: list[Violation] = []
    for path in iter_python_files(paths):
        source = path.read_text(encoding="utf-8")
        violations.extend(check_source(path, source, max_module_lines, max_function_lines))
    return violations


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("paths", nargs="+", type=Path, help="files or directories to check")
    parser.add_argument("--max-module-lines", type=int, default=MAX_MODULE_LINES)
    parser.add_argument("--max-function-lines", type=int, default=MAX_FUNCTION_LINES)
    args = parser.parse_args(argv)

    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"check_budgets: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2

    violations = check_paths(args.paths, args.max_module_lines, args.max_function_lines)
    for violation in violations:
        print(violation)
    if violations:
        print(f"check_budgets: {len(violations)} budget violation(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
