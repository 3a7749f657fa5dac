"""Names the chaos test process and its workers share (importable by both; registers nothing)."""

from __future__ import annotations

#: Handler module the chaos workers load (``TASKFORGE_HANDLERS``).
HANDLERS_MODULE = "tests.chaos.handlers"

#: Variable naming the directory the workers' execution logs go to.
EXEC_DIR_ENV = "CHAOS_EXEC_DIR"
