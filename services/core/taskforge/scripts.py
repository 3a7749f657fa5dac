"""Loads the Lua scripts in ``lua/``, resolves their includes, and reads their header contract."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from taskforge.errors import ScriptError

if TYPE_CHECKING:
    from taskforge.broker.mux import RedisMux

_INCLUDE_RE = re.compile(r'^--- @include "(?P<name>[A-Za-z0-9_]+)"$', re.MULTILINE)
_KEYS_RE = re.compile(r"^\s*KEYS\[(\d+)\]", re.MULTILINE)

#: Every script TaskForge runs; a test checks this matches the files on disk.
SCRIPT_NAMES = (
    "enqueue",
    "fetch",
    "heartbeat",
    "finish",
    "promote",
    "reclaim",
    "cancel",
    "dlq_requeue",
    "dlq_purge",
    "ratelimit",
    "register_queues",
    "queue_mark",
    "reap_queue",
    "queue_stats",
)


def _read(relative: str) -> str:
    return resources.files("taskforge").joinpath("lua", relative).read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    """Return the script ``name`` with its ``--- @include`` lines replaced by the helpers."""
    return _INCLUDE_RE.sub(lambda m: _read(f"includes/{m['name']}.lua"), _read(f"{name}.lua"))


@cache
def declared_key_count(name: str) -> int:
    """Number of ``KEYS[i]`` the script's header documents."""
    header = _read(f"{name}.lua").split("]]", 1)[0]
    return len(set(_KEYS_RE.findall(header)))


@dataclass(frozen=True, slots=True)
class Scripts:
    """The registered scripts of one Redis client (EVALSHA, reloaded after a SCRIPT FLUSH).

    With a :class:`~taskforge.broker.mux.RedisMux`, :meth:`run` sends the call over that one
    multiplexed connection (a script never blocks, so it cannot hold other callers up): about a
    fifth of redis-py's client-side cost per call. Pipelined calls (:meth:`queue`) stay on
    redis-py.
    """

    by_name: dict[str, AsyncScript]
    mux: RedisMux | None = None

    @classmethod
    def register(cls, client: Redis, mux: RedisMux | None = None) -> Scripts:
        """Register every script with ``client``; nothing is sent to Redis until first use."""
        scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}
        return cls(scripts, mux)

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name``; the key count must match the script's header."""
        script = self.by_name[name]
        if self.mux is None:
            _check_keys(name, keys)
            return await script(keys=keys, args=args)
        call = self.command(name, keys, args)
        (reply,) = await self.mux.execute(call)
        if isinstance(reply, NoScriptError):  # a Redis restart or SCRIPT FLUSH: load, run again
            loaded, reply = await self.mux.execute(("SCRIPT", "LOAD", script.script), call)
            if isinstance(loaded, Exception):  # OOM, LOADING: the reason, not NOSCRIPT again
                raise loaded
        if isinstance(reply, Exception):
            raise reply
        return reply

    def command(self, name: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        """Script ``name`` as a bare ``EVALSHA`` command, to send with other commands in one
        write (``RedisMux.execute``); the key count must match the script's header. After a
        Redis restart or ``SCRIPT FLUSH`` its reply is a ``NoScriptError``: :meth:`load` it,
        then send it again."""
        _check_keys(name, keys)
        return ("EVALSHA", self.by_name[name].sha, len(keys), *keys, *args)

    async def load(self, name: str) -> None:
        """Load script ``name`` into Redis (after a ``NoScriptError`` from :meth:`command`)."""
        script = self.by_name[name]
        if self.mux is None:
            await script.registered_client.script_load(script.script)
            return
        (loaded,) = await self.mux.execute(("SCRIPT", "LOAD", script.script))
        if isinstance(loaded, Exception):
            raise loaded

    async def queue(self, pipe: Pipeline, name: str, keys: list[str], args: list[Any]) -> None:
        """Add a call of script ``name`` to ``pipe`` (its reply comes with the others)."""
        _check_keys(name, keys)
        await self.by_name[name](keys=keys, args=args, client=pipe)


def _check_keys(name: str, keys: list[str]) -> None:
    if len(keys) != declared_key_count(name):
        raise ScriptError(f"{name}.lua declares {declared_key_count(name)} keys, got {len(keys)}")
