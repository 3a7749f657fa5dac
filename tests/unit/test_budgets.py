"""Tests for scripts/check_budgets.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_budgets.py"


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_budgets", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


checker = _load_checker()


def _function(name: str, body_lines: int, indent: str = "", prefix: str = "def") -> str:
    """Source of a function that is ``body_lines + 1`` lines long."""
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(body_lines))
    return f"{indent}{prefix} {name}() -> None:\n{body}"


def _write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_long_function_is_flagged(tmp_path: Path) -> None:
    path = _write(tmp_path, "long.py", _function("too_long", 60))  # 61 lines

    violations = checker.check_paths([tmp_path])

    assert [(v.path, v.line) for v in violations] == [(path, 1)]
    assert "'too_long' has 61 lines (max 60)" in violations[0].message


def test_function_at_the_limit_is_not_flagged(tmp_path: Path) -> None:
    _write(tmp_path, "ok.py", _function("exactly_60", 59) + "\n\n" + _function("short", 3))

    assert checker.check_paths([tmp_path]) == []


def test_long_async_method_is_flagged_with_qualified_name(tmp_path: Path) -> None:
    source = "class Worker:\n" + _function("run", 70, indent="    ", prefix="async def")
    _write(tmp_path, "worker.py", source)

    violations = checker.check_paths([tmp_path])

    assert len(violations) == 1
    assert violations[0].line == 2
    assert "'Worker.run' has 71 lines" in violations[0].message


def test_nested_function_is_counted_on_its_own(tmp_path: Path) -> None:
    source = "def outer() -> None:\n" + _function("inner", 65, indent="    ")
    _write(tmp_path, "nested.py", source)

    names = [v.message for v in checker.check_paths([tmp_path])]

    assert len(names) == 2
    assert any("'outer'" in n for n in names)
    assert any("'outer.inner'" in n for n in names)


def test_long_module_is_flagged(tmp_path: Path) -> None:
    _write(tmp_path, "big.py", "x = 1\n" * 401)
    _write(tmp_path, "fine.py", "x = 1\n" * 400)

    violations = checker.check_paths([tmp_path])

    assert [v.path.name for v in violations] == ["big.py"]
    assert "module has 401 lines (max 400)" in violations[0].message


@pytest.mark.parametrize(
    "comment",
    ["# noqa: C901", "#noqa:C901", "# noqa: E501, C901", "# NOQA: c901"],
)
def test_noqa_c901_is_flagged(tmp_path: Path, comment: str) -> None:
    _write(tmp_path, "complex.py", f"def f() -> None:  {comment}\n    pass\n")

    violations = checker.check_paths([tmp_path])

    assert [(v.line, "C901" in v.message) for v in violations] == [(1, True)]


def test_other_noqa_and_strings_are_not_flagged(tmp_path: Path) -> None:
    source = 'import os  # noqa: F401\nTEXT = "# noqa: C901"\n'
    _write(tmp_path, "fine.py", source)

    assert checker.check_paths([tmp_path]) == []


def test_unparsable_file_is_flagged(tmp_path: Path) -> None:
    _write(tmp_path, "broken.py", "def f(:\n")

    violations = checker.check_paths([tmp_path])

    assert len(violations) == 1
    assert "cannot parse" in violations[0].message


def test_skips_pycache_and_non_python_files(tmp_path: Path) -> None:
    (tmp_path / "__pycache__").mkdir()
    _write(tmp_path / "__pycache__", "gen.py", _function("huge", 100))
    _write(tmp_path, "notes.txt", _function("huge", 100))

    assert checker.check_paths([tmp_path]) == []


def test_cli_exit_status_and_output(tmp_path: Path) -> None:
    good = tmp_path / "good"
    bad = tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    _write(good, "a.py", _function("short", 5))
    _write(bad, "b.py", _function("long_one", 80))

    ok = _run(str(good))
    failed = _run(str(good), str(bad))
    missing = _run(str(tmp_path / "nope"))

    assert (ok.returncode, ok.stdout) == (0, "")
    assert failed.returncode == 1
    assert f"{bad / 'b.py'}:1: function 'long_one' has 81 lines" in failed.stdout
    assert missing.returncode == 2


def test_cli_limits_are_configurable(tmp_path: Path) -> None:
    _write(tmp_path, "a.py", _function("short", 5))

    assert _run("--max-function-lines", "5", str(tmp_path)).returncode == 1
    assert _run("--max-function-lines", "6", str(tmp_path)).returncode == 0
