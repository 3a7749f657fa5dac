"""Tests for taskforge.keys: queue names, key names and cluster slots."""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from taskforge.ids import new_task_id
from taskforge.keys import (
    PREFIX,
    QUEUES_REGISTRY,
    QueueKeys,
    key_slot,
    validate_queue_name,
)
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer, require_redis_server

QUEUE_ALPHABET = string.ascii_letters + string.digits + "_-"


def random_queue_names(count: int, seed: int) -> list[str]:
    """Valid queue names of every length from 1 to 64, drawn reproducibly."""
    rng = random.Random(seed)
    return [
        "".join(rng.choice(QUEUE_ALPHABET) for _ in range(rng.randint(1, 64))) for _ in range(count)
    ]


def all_keys_of(queue: str) -> list[str]:
    """Every key QueueKeys builds for ``queue``, per-task keys included."""
    keys = QueueKeys(queue)
    task_id = new_task_id(queue)
    return [
        *keys.all_static(),
        keys.base,
        keys.task(task_id),
        keys.events(task_id),
        keys.idempotency("order-42"),
        # Idempotency keys are user input: braces inside must not move the slot.
        keys.idempotency("{other}"),
        keys.idempotency("}{x}"),
    ]


@pytest.mark.parametrize("queue", ["default", "emails", "a", "x" * 64, *random_queue_names(200, 7)])
def test_every_key_of_a_queue_is_in_one_slot(queue: str) -> None:
    keys = all_keys_of(queue)
    slots = {key: key_slot(key) for key in keys}
    assert set(slots.values()) == {key_slot(queue)}, slots


def test_queue_keys_carry_prefix_and_hash_tag() -> None:
    keys = QueueKeys("emails")
    for key in [*keys.all_static(), keys.task("t"), keys.events("t"), keys.idempotency("k")]:
        assert key.startswith(f"{PREFIX}:{{emails}}:"), key


def test_queue_keys_are_distinct() -> None:
    keys = QueueKeys("emails")
    names = [*keys.all_static(), keys.task("t"), keys.events("t"), keys.idempotency("t")]
    assert len(set(names)) == len(names)


def test_different_queues_do_not_share_keys() -> None:
    a, b = QueueKeys("a"), QueueKeys("b")
    assert not set(a.all_static()) & set(b.all_static())
    assert a.task("t") != b.task("t")


def test_queue_registry_has_no_queue_tag() -> None:
    # The registry is global: it must not pin itself to some queue's slot by accident.
    assert "{" not in QUEUES_REGISTRY


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        # Published values (Redis Cluster specification and CLUSTER KEYSLOT docs).
        ("foo", 12182),
        ("bar", 5061),
        ("hello", 866),
        ("123456789", 12739),
        ("somekey", 11058),
        ("", 0),
    ],
)
def test_key_slot_known_values(key: str, slot: int) -> None:
    assert key_slot(key) == slot


@pytest.mark.parametrize(
    ("key", "same_as"),
    [
        ("{user1000}.following", "{user1000}.followers"),
        ("{user1000}.following", "user1000"),
        ("foo{{bar}}zap", "{bar"),  # the tag is "{bar"
        ("foo{bar}{zap}", "bar"),  # only the first tag counts
        ("tf:{q}:stream", "q"),
        ("foo{hello}bar", "hello"),
    ],
)
def test_key_slot_hash_tag_rules(key: str, same_as: str) -> None:
    assert key_slot(key) == key_slot(same_as)


def test_key_slot_empty_tag_hashes_whole_key() -> None:
    assert key_slot("a{}b") != key_slot("")
    assert key_slot("a{}b") != key_slot("a{}c")
    # "{}" comes first, so "{bar}" is not a tag either.
    assert key_slot("foo{}{bar}") != key_slot("bar")


# -- cross-check against a real cluster-enabled Redis ------------------------------------


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A standalone cluster-enabled redis-server: CLUSTER KEYSLOT needs cluster mode.

    The bus port is chosen explicitly because the default (port + 10000) overflows for the
    high ports free_port hands out.
    """
    server = RedisServer(
        dir=Path(tmp_path_factory.mktemp("redis-cluster-node")),
        binary=require_redis_server(),
        extra_args=["--cluster-enabled", "yes", "--cluster-port", str(free_port())],
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def cluster_client(cluster_node: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(cluster_node.url, decode_responses=False)
    try:
        yield client
    finally:
        await client.aclose()


def tricky_keys() -> list[str]:
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "{}:._- é€😀"
    keys = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    keys += ["{", "}", "{}", "}{", "{{}}", "a{b", "a}b{c}", "{a}}", "é", "{é}x", "😀"]
    for queue in random_queue_names(20, 3):
        keys += all_keys_of(queue)
    return keys


async def test_key_slot_matches_cluster_keyslot(cluster_client: Redis) -> None:
    mismatches = {}
    for key in tricky_keys():
        expected = int(await cluster_client.execute_command("CLUSTER", "KEYSLOT", key))
        if key_slot(key) != expected:
            mismatches[key] = (key_slot(key), expected)
    assert mismatches == {}


# -- queue names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a b",
        "a.b",
        "x" * 65,
        "{q}",
        "q}",
        "a:b",
        "émails",
        "tab\t",
        "new\nline",
        "emails\n",
        "a/b",
    ],
)
def test_validate_queue_name_rejects(name: str) -> None:
    with pytest.raises(ValueError, match="invalid queue name"):
        validate_queue_name(name)


@pytest.mark.parametrize("name", ["emails", "a-b_c", "a", "x" * 64, "Q1", "0", "-", "_"])
def test_validate_queue_name_accepts(name: str) -> None:
    assert validate_queue_name(name) == name
