"""Producers of the chaos run and the ledger of what the system accepted.

*Accepted* means a 2xx received: a task enters the ledger only when its enqueue answered 2xx
(with the id it returned). A request that got no 2xx (connection refused or reset, 5xx, a
timeout) is not in the ledger, even though the task may exist: the api may have stored it and
died before answering. The checker never calls such a task lost, nor an error.

Requests carrying idempotency keys are retried with the same keys on connection errors, 5xx and
429 until they get a 2xx: that is what makes an api or gateway kill safe for a client. Requests
without keys are sent once, as a client that cannot deduplicate must do.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

Kind = Literal["quick", "slow", "flaky", "fail", "delayed", "cancel"]

#: Share of each kind of task among those produced (cumulative weights below).
MIX: dict[Kind, float] = {
    "quick": 0.40, "slow": 0.15, "flaky": 0.20, "fail": 0.05, "delayed": 0.15, "cancel": 0.05,
}  # fmt: skip

#: Retries of tasks that must succeed: no kill storm reaches this many abandoned attempts.
MUST_SUCCEED_RETRIES = 40
#: Retries of always-failing tasks: they must be dead-lettered after 3 attempts.
FAIL_RETRIES = 2
#: Seconds a keyed request keeps being retried before the producer gives up on it.
GIVE_UP_S = 90.0

_FAST_BACKOFF = {"kind": "fixed", "base_s": 0.2, "cap_s": 0.2, "jitter": False}


@dataclass
class Entry:
    """One accepted task."""

    id: str
    kind: Kind
    keyed: bool
    #: ``time.monotonic()`` when its 2xx arrived.
    acked_at: float
    #: The api answered ``cancelled`` to our DELETE: the task must end ``cancelled``.
    cancel_acked: bool = False


@dataclass
class Ledger:
    """Every accepted task, also appended to ``path`` as JSON lines."""

    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    #: Responses by status class (``"2xx"``, ``"5xx"``, ``"conn"``...), for the report.
    responses: Counter[str] = field(default_factory=Counter)
    #: Unexpected 4xx answers (anything but 429): each one is a bug.
    refusals: list[str] = field(default_factory=list)
    #: Requests that got no 2xx: their tasks may exist, unrecorded.
    unacknowledged: int = 0

    def accept(self, task_id: str, kind: Kind, keyed: bool) -> Entry:
        entry = Entry(task_id, kind, keyed, time.monotonic())
        self.entries[task_id] = entry
        with self.path.open("a") as out:
            out.write(json.dumps(asdict(entry)) + "\n")
        return entry


def task_body(kind: Kind, rng: random.Random) -> dict[str, Any]:
    """The JSON of one task of ``kind``."""
    body: dict[str, Any] = {"max_retries": MUST_SUCCEED_RETRIES, "backoff": _FAST_BACKOFF}
    if kind == "slow":
        body |= {"type": "chaos.slow", "payload": {"seconds": round(rng.uniform(0.2, 1.5), 3)}}
    elif kind == "flaky":
        body |= {"type": "chaos.flaky", "payload": {"p": 0.3}}
    elif kind == "fail":
        body |= {"type": "chaos.fail", "max_retries": FAIL_RETRIES}
    elif kind == "delayed":
        body |= {"type": "chaos.quick", "delay_s": round(rng.uniform(1, 8), 3)}
    elif kind == "cancel":
        body |= {"type": "chaos.quick", "delay_s": round(rng.uniform(15, 25), 3)}
    else:
        body["type"] = "chaos.quick"
    return body


def pick_kind(rng: random.Random) -> Kind:
    kinds = list(MIX)
    return rng.choices(kinds, weights=[MIX[k] for k in kinds])[0]


@dataclass
class Producer:
    """One producer: sends singles and batches through the gateway until told to stop."""

    client: httpx.AsyncClient
    ledger: Ledger
    queue: str
    rng: random.Random

    async def send_one(self) -> None:
        """Send one request (a single task or a batch, keyed or not) and record what it got."""
        keyed = self.rng.random() < 0.5
        size = 1 if self.rng.random() < 0.3 else self.rng.randint(2, 20)
        kinds = [pick_kind(self.rng) for _ in range(size)]
        bodies = [task_body(k, self.rng) | {"queue": self.queue} for k in kinds]
        if size == 1:
            headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
            reply = await self._post("/v1/tasks", bodies[0], headers, keyed)
            ids = [] if reply is None else [str(reply["id"])]
        else:
            if keyed:
                bodies = [b | {"idempotency_key": uuid.uuid4().hex} for b in bodies]
            reply = await self._post("/v1/tasks/batch", {"tasks": bodies}, {}, keyed)
            ids = [] if reply is None else [str(t["id"]) for t in reply["tasks"]]
        if not ids:
            return
        for task_id, kind in zip(ids, kinds, strict=True):
            entry = self.ledger.accept(task_id, kind, keyed)
            if kind == "cancel":
                await self._cancel(entry)

    async def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], retry: bool
    ) -> Any:
        """The JSON of the 2xx answer, or None when none came (or a retry was not allowed)."""
        deadline = time.monotonic() + GIVE_UP_S
        while True:
            status = await self._request("POST", path, body, headers)
            if isinstance(status, httpx.Response):
                return status.json()
            if status == "refused" or not retry or time.monotonic() > deadline:
                self.ledger.unacknowledged += 1
                return None
            await asyncio.sleep(self.rng.uniform(0.1, 0.4))

    async def _cancel(self, entry: Entry) -> None:
        """DELETE the task; only a 2xx ``cancelled`` obliges it to end cancelled."""
        for _ in range(20):
            status = await self._request("DELETE", f"/v1/tasks/{entry.id}", None, {})
            if isinstance(status, httpx.Response):
                entry.cancel_acked = status.json()["status"] == "cancelled"
                return
            if status == "refused":
                return
            await asyncio.sleep(self.rng.uniform(0.1, 0.4))

    async def _request(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> httpx.Response | Literal["retry", "refused"]:
        try:
            response = await self.client.request(method, path, json=body, headers=headers)
        except httpx.TransportError:
            self.ledger.responses["conn"] += 1
            return "retry"
        code = response.status_code
        self.ledger.responses[f"{code // 100}xx" if code != 429 else "429"] += 1
        if 200 <= code < 300:
            return response
        if code >= 500 or code == 429:
            if code == 500:
                self.ledger.refusals.append(f"{method} {path}: 500 {response.text[:300]}")
            return "retry"
        # A cancel racing the task's own start may find it finished: not a bug.
        if not (method == "DELETE" and code == 409):
            self.ledger.refusals.append(f"{method} {path}: {code} {response.text[:300]}")
        return "refused"


async def produce(
    url: str, admin_key: str, ledger: Ledger, queue: str, *, target: int, seconds: float,
    producers: int = 4, seed: int = 0,
) -> None:  # fmt: skip
    """Run ``producers`` producers until ``target`` tasks are accepted, paced over ``seconds``."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {admin_key}"}
    limits = httpx.Limits(max_connections=producers, max_keepalive_connections=producers)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=10.0, limits=limits
    ) as client:

        async def run(producer: Producer) -> None:
            while len(ledger.entries) < target:
                # Ahead of the pace: wait, so that tasks keep arriving throughout the storm.
                due = started + seconds * len(ledger.entries) / target
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await producer.send_one()

        rng = random.Random(seed)
        await asyncio.gather(
            *(
                run(Producer(client, ledger, queue, random.Random(rng.random())))
                for _ in range(producers)
            )
        )
