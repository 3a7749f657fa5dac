"""API key storage against real Redis, and the ``taskforge-admin keys`` CLI as a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from taskforge.apikeys import (
    APIKEYS_INDEX,
    ApiKey,
    ApiKeyStore,
    apikey_record_key,
    generate_secret,
    hash_secret,
    parse_scopes,
)
from taskforge.broker import Broker
from tests.support.ports import free_port

CLI = [sys.executable, "-m", "taskforge.cli"]


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[ApiKeyStore]:
    broker = Broker.from_url(redis_url)
    try:
        yield ApiKeyStore(broker.redis)
    finally:
        await broker.close()


def _name() -> str:
    return "test-" + uuid.uuid4().hex[:10]


def test_generated_keys_have_the_documented_shape() -> None:
    keys = {generate_secret() for _ in range(100)}
    assert len(keys) == 100
    assert all(re.fullmatch(r"tfk_[A-Za-z0-9_-]{43}", k) for k in keys)


def test_hash_is_sha256_hex() -> None:
    assert hash_secret("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_parse_scopes() -> None:
    assert parse_scopes("tasks:read, tasks:write") == {"tasks:read", "tasks:write"}
    assert parse_scopes("admin") == {"admin"}
    for bad in ("", ",", "root", "tasks:read,root"):
        with pytest.raises(ValueError, match="invalid scopes"):
            parse_scopes(bad)


def test_admin_implies_every_scope() -> None:
    admin = ApiKey("a", "n", frozenset({"admin"}), None, None, 0)
    reader = ApiKey("r", "n", frozenset({"tasks:read"}), None, None, 0)
    assert admin.allows("tasks:write") and admin.allows("tasks:read") and admin.allows("admin")
    assert reader.allows("tasks:read")
    assert not reader.allows("tasks:write") and not reader.allows("admin")


async def test_create_stores_only_the_hash(store: ApiKeyStore, redis_client: Redis) -> None:
    new = await store.create(_name(), frozenset({"tasks:read"}), rate_per_s=2.5, burst=7)
    assert new is not None
    digest = hash_secret(new.secret)
    record = await redis_client.hgetall(apikey_record_key(digest))
    assert record[b"id"] == new.key.id.encode()
    assert record[b"scopes"] == b"tasks:read"
    assert (record[b"rate_per_s"], record[b"burst"], record[b"revoked"]) == (b"2.5", b"7", b"0")
    assert await redis_client.hget(APIKEYS_INDEX, new.key.id) == digest.encode()
    stored = [v for kv in record.items() for v in kv]
    assert all(new.secret.encode() not in v for v in stored)


async def test_find_get_list_revoke(store: ApiKeyStore) -> None:
    new = await store.create(_name(), frozenset({"tasks:write", "tasks:read"}))
    assert new is not None
    found = await store.find(new.secret)
    assert found == new.key
    assert await store.get(new.key.id) == new.key
    assert await store.find(generate_secret()) is None
    assert await store.get("000000000000") is None
    assert new.key.id in [k.id for k in await store.list_keys()]

    revoked = await store.revoke(new.key.id)
    assert revoked is not None
    again = await store.find(new.secret)
    assert again is not None and again.revoked
    assert await store.revoke(new.key.id) is not None, "revoking twice is fine"
    assert await store.revoke("000000000000") is None


async def test_record_without_matching_index_entry_is_not_a_key(
    store: ApiKeyStore, redis_client: Redis
) -> None:
    new = await store.create(_name(), frozenset({"admin"}))
    assert new is not None
    await redis_client.hset(APIKEYS_INDEX, new.key.id, "0" * 64)
    assert await store.find(new.secret) is None
    assert new.key.id not in [k.id for k in await store.list_keys()]


async def test_touch_records_last_use(store: ApiKeyStore) -> None:
    new = await store.create(_name(), frozenset({"admin"}))
    assert new is not None
    await store.touch(new.key, now_ms=1_700_000_000_000)
    found = await store.find(new.secret)
    assert found is not None and found.last_used_ms == 1_700_000_000_000


async def test_ensure_bootstrap_is_idempotent(store: ApiKeyStore) -> None:
    secret = "bootstrap-" + uuid.uuid4().hex
    first = await store.ensure_bootstrap(secret)
    second = await store.ensure_bootstrap(secret)
    assert first.id == second.id
    assert (first.name, first.scopes) == ("bootstrap", frozenset({"admin"}))
    assert await store.create("again", frozenset({"admin"}), secret=secret) is None


async def test_invalid_limits_are_refused(store: ApiKeyStore) -> None:
    with pytest.raises(ValueError, match="scope"):
        await store.create(_name(), frozenset())
    with pytest.raises(ValueError, match="rate"):
        await store.create(_name(), frozenset({"admin"}), rate_per_s=0)
    with pytest.raises(ValueError, match="burst"):
        await store.create(_name(), frozenset({"admin"}), burst=0)


# -- the CLI ----------------------------------------------------------------------------


def _cli(*args: str, **env_values: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFORGE_")}
    env.update({f"TASKFORGE_{k.upper()}": v for k, v in env_values.items()})
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_cli_create_list_revoke(redis_url: str, store: ApiKeyStore) -> None:
    name = _name()
    created = _cli(
        "keys", "create", "--name", name, "--scopes", "tasks:write,tasks:read",
        "--rate-per-s", "5", "--burst", "10", redis_url=redis_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    match = re.fullmatch(r"key: (tfk_\S{43})\nid: ([0-9a-f]{12})\n", created.stdout)
    assert match, created.stdout
    secret, key_id = match.groups()
    assert "not shown again" in created.stderr
    stored = await store.find(secret)
    assert stored is not None and stored.id == key_id
    assert (stored.rate_per_s, stored.burst) == (5.0, 10)

    listed = _cli("keys", "list", redis_url=redis_url)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(key_id)]
    assert name in row and "tasks:write,tasks:read" in row and " no " in row
    assert listed.stdout.splitlines()[0].split() == [
        "id", "name", "scopes", "rate_per_s", "burst", "created", "revoked", "last_used",
    ]  # fmt: skip
    assert secret not in listed.stdout and hash_secret(secret) not in listed.stdout

    revoked = _cli("keys", "revoke", key_id, redis_url=redis_url)
    assert revoked.returncode == 0, revoked.stderr
    assert key_id in revoked.stdout
    after = await store.find(secret)
    assert after is not None and after.revoked

    as_json = json.loads(_cli("keys", "list", "--json", redis_url=redis_url).stdout)
    (mine,) = [k for k in as_json if k["id"] == key_id]
    assert mine["revoked"] is True and "key" not in mine and "digest" not in mine


def test_cli_create_json_and_default_limits(redis_url: str) -> None:
    created = _cli("keys", "create", "--name", _name(), "--scopes", "admin", "--json",
                   redis_url=redis_url)  # fmt: skip
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["key"].startswith("tfk_") and body["scopes"] == "admin"
    assert body["rate_per_s"] is None and body["burst"] is None


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["keys", "revoke", "000000000000"], "redis", 1, "taskforge-admin: no API key with id"),
        (["keys", "create", "--name", "x", "--scopes", "root"], "redis", 2, "invalid scopes"),
        (["keys", "create", "--name", "x", "--scopes", "admin", "--burst", "0"], "redis", 2,
         "at least 1"),
        (["keys", "create", "--scopes", "admin"], "redis", 2, "--name"),
        (["keys"], "redis", 2, "usage: taskforge-admin keys"),
        (["keys", "list"], "none", 2, "TASKFORGE_REDIS_URL"),
        (["keys", "list"], "closed", 1, "Redis unavailable"),
    ],
)  # fmt: skip
def test_cli_exit_codes(redis_url: str, args: list[str], env: str, code: int, message: str) -> None:
    urls = {"redis": redis_url, "closed": f"redis://127.0.0.1:{free_port()}/0"}
    result = _cli(*args, **({"redis_url": urls[env]} if env in urls else {}))
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr
