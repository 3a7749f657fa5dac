"""``taskforge-admin``: API keys straight in Redis: ``taskforge-admin keys create|list|revoke``.

The bootstrap tool: it needs no gateway and no key, only ``TASKFORGE_REDIS_URL`` (and
``TASKFORGE_REDIS_PASSWORD``) like every service, so it runs inside any server pod to create
the first admin key. Everyday use goes through the gateway with the client's ``taskforge``
command (``taskforge keys ...``, package ``taskforge-client``); the two cannot share a name,
because both may be installed in one environment.
Exit codes: 0 success, 1 not found or Redis unavailable, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from taskforge.apikeys import SCOPES, ApiKey, ApiKeyStore, parse_scopes
from taskforge.broker.connection import Broker
from taskforge.errors import ConfigurationError, RedisUnavailable
from taskforge.settings import CoreSettings, load_settings

PROG = "taskforge-admin"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _scopes(text: str) -> str:
    try:
        parse_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``taskforge-admin``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument(
        "--scopes", required=True, type=_scopes, help=f"comma-separated: {', '.join(SCOPES)}"
    )
    create.add_argument(
        "--rate-per-s", type=_positive_float, help="sustained requests/s (default: gateway's)"
    )
    create.add_argument("--burst", type=_positive_int, help="burst size (default: gateway's)")
    create.add_argument("--json", action="store_true", help="print JSON")
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", help="the key id shown by create and list")
    return parser


def _time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def key_info(key: ApiKey) -> dict[str, Any]:
    """A key as shown to operators: no secret, no digest."""
    return {
        "id": key.id,
        "name": key.name,
        "scopes": key.scopes_text,
        "rate_per_s": key.rate_per_s,
        "burst": key.burst,
        "created": _time(key.created_ms),
        "revoked": key.revoked,
        "last_used": _time(key.last_used_ms),
    }


def _cell(column: str, value: Any) -> str:
    """A table cell: limits left to the gateway show as ``default``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "default" if column in ("rate_per_s", "burst") else "-"
    return str(value)


async def _create(store: ApiKeyStore, args: argparse.Namespace) -> int:
    new = await store.create(
        args.name, parse_scopes(args.scopes), rate_per_s=args.rate_per_s, burst=args.burst
    )
    assert new is not None  # a fresh random key cannot exist already
    if args.json:
        print(json.dumps({"key": new.secret, **key_info(new.key)}))
    else:
        print(f"key: {new.secret}")
        print(f"id: {new.key.id}")
        print("Store the key now: it is not shown again.", file=sys.stderr)
    return EXIT_OK


async def _list(store: ApiKeyStore, args: argparse.Namespace) -> int:
    rows = [key_info(k) for k in await store.list_keys()]
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    columns = ("id", "name", "scopes", "rate_per_s", "burst", "created", "revoked", "last_used")
    table = [list(columns)] + [[_cell(c, row[c]) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return EXIT_OK


async def _revoke(store: ApiKeyStore, args: argparse.Namespace) -> int:
    key = await store.revoke(args.id)
    if key is None:
        print(f"{PROG}: no API key with id {args.id!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"revoked {key.id} ({key.name})")
    return EXIT_OK


async def _run(settings: CoreSettings, args: argparse.Namespace) -> int:
    broker = Broker.from_settings(settings)
    store = ApiKeyStore(broker.redis)
    actions = {"create": _create, "list": _list, "revoke": _revoke}
    try:
        return await actions[args.action](store, args)
    finally:
        await broker.close()


def main(argv: list[str] | None = None) -> int:
    """Run one ``taskforge-admin`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(CoreSettings)
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(settings, args))
    except RedisUnavailable as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
