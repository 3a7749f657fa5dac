"""Tests for taskforge.errors: one hierarchy with HTTP mapping, one code-to-exception mapper."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

from taskforge.errors import (
    SIGNAL_CODES,
    ErrorCode,
    IdempotencyConflict,
    QueueLimitReached,
    ScriptError,
    TaskForgeError,
    TaskNotCancellable,
    TaskNotFound,
    error_from_code,
)

#: Packages whose modules may define TaskForgeError subclasses.
PACKAGES = (
    "taskforge",
    "taskforge_worker",
    "taskforge_scheduler",
    "taskforge_api",
    "taskforge_gateway",
)

KEBAB_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def import_everything() -> None:
    """Import every module of our packages so that every subclass is defined."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            importlib.import_module(module.name)


def all_subclasses(cls: type) -> list[type]:
    found: list[type] = []
    for sub in cls.__subclasses__():
        found += [sub, *all_subclasses(sub)]
    return found


def our_errors() -> list[type[TaskForgeError]]:
    import_everything()
    return [c for c in all_subclasses(TaskForgeError) if c.__module__.split(".")[0] in PACKAGES]


ERRORS = our_errors()


def test_the_walk_finds_errors_outside_the_core() -> None:
    modules = {c.__module__ for c in ERRORS}
    assert "taskforge.errors" in modules
    assert any(not m.startswith("taskforge.") for m in modules), modules


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_subclass_has_http_status_and_problem_type(cls: type[TaskForgeError]) -> None:
    assert isinstance(cls.status, int)
    assert not isinstance(cls.status, bool)
    assert 400 <= cls.status <= 599
    assert isinstance(cls.problem_type, str)
    assert KEBAB_RE.fullmatch(cls.problem_type), cls.problem_type
    # Declared on the class itself, not inherited by accident from its parent.
    assert "status" in vars(cls)
    assert "problem_type" in vars(cls)


def test_problem_types_are_unique() -> None:
    types = [c.problem_type for c in [TaskForgeError, *ERRORS]]
    assert len(types) == len(set(types)), sorted(types)


def test_root_has_status_and_problem_type() -> None:
    assert TaskForgeError.status == 500
    assert KEBAB_RE.fullmatch(TaskForgeError.problem_type)


@pytest.mark.parametrize("code", list(set(ErrorCode) - SIGNAL_CODES), ids=lambda c: c.name)
def test_error_from_code_names_subject_and_script(code: ErrorCode) -> None:
    subject = "emails.0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3"
    error = error_from_code(int(code), script="cancel", subject=subject, detail="succeeded")
    assert isinstance(error, TaskForgeError)
    assert type(error) is not TaskForgeError
    assert not isinstance(error, ScriptError), "every known code maps to a specific error"
    assert subject in str(error)
    assert "cancel" in str(error)


def test_every_code_is_negative() -> None:
    assert all(code < 0 for code in ErrorCode)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (ErrorCode.TASK_NOT_FOUND, TaskNotFound),
        (ErrorCode.TASK_FINISHED, TaskNotCancellable),
        (ErrorCode.IDEMPOTENCY_CONFLICT, IdempotencyConflict),
        (ErrorCode.QUEUE_LIMIT, QueueLimitReached),
    ],
)
def test_error_from_code_classes(code: ErrorCode, cls: type[TaskForgeError]) -> None:
    assert type(error_from_code(code, script="s", subject="x")) is cls


def test_error_from_code_includes_detail() -> None:
    error = error_from_code(-2, script="cancel", subject="q.id", detail="dead")
    assert "dead" in str(error)
    conflict = error_from_code(-3, script="enqueue", subject="q.id", detail="order-7")
    assert "order-7" in str(conflict)


@pytest.mark.parametrize("code", [-99, -5, 0, 1, 7])
def test_unknown_code_is_a_script_error(code: int) -> None:
    error = error_from_code(code, script="finish", subject="q.abc")
    assert type(error) is ScriptError
    assert str(code) in str(error)
    assert "finish" in str(error)
    assert "q.abc" in str(error)
