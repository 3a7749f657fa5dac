"""Tests for taskforge.ids: task ids carry their queue and sort by creation time."""

from __future__ import annotations

import re
import time

import pytest

from taskforge.ids import new_task_id, queue_of

SUFFIX = "0193c2a1b2c3d4e5f6a7b8c9d0e1f2a3"


@pytest.mark.parametrize("queue", ["default", "emails", "a-b_c", "x" * 64, "Q", "0"])
def test_new_task_id_roundtrips_its_queue(queue: str) -> None:
    task_id = new_task_id(queue)
    assert queue_of(task_id) == queue
    assert re.fullmatch(rf"{re.escape(queue)}\.[0-9a-f]{{32}}", task_id)


def test_new_task_id_embeds_current_millis() -> None:
    before = time.time_ns() // 1_000_000
    task_id = new_task_id("q")
    after = time.time_ns() // 1_000_000
    millis = int(task_id.split(".")[1][:12], 16)
    assert before <= millis <= after


def test_new_task_ids_are_unique() -> None:
    ids = {new_task_id("q") for _ in range(5000)}
    assert len(ids) == 5000


def test_ids_sort_by_creation_time() -> None:
    ids = []
    for _ in range(5):
        ids.append(new_task_id("q"))
        time.sleep(0.003)
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "emails",
        "emails.",
        f".{SUFFIX}",  # empty queue
        f"emails{SUFFIX}",  # no dot
        f"emails.{SUFFIX[:-1]}",  # 31 hex digits
        f"emails.{SUFFIX}0",  # 33 hex digits
        f"emails.{SUFFIX.upper()}",  # upper-case hex
        f"emails.{SUFFIX[:-1]}g",  # not hex
        f"a b.{SUFFIX}",  # invalid queue name
        f"{{q}}.{SUFFIX}",
        f"a.b.{SUFFIX}",  # queue names have no dots
        f"emails.{SUFFIX}\n",
        f"{'x' * 65}.{SUFFIX}",
    ],
)
def test_queue_of_rejects_malformed_ids(task_id: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        queue_of(task_id)


def test_queue_of_accepts_hand_written_id() -> None:
    assert queue_of(f"emails.{SUFFIX}") == "emails"
