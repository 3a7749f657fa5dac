"""The asyncio client: :class:`AsyncTaskForge`, the twin of :class:`taskforge_client.TaskForge`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from taskforge_client import _ops
from taskforge_client._calls import (
    DEFAULT_CHUNK_SIZE,
    Call,
    Config,
    Poll,
    RetryPolicy,
    batch_items,
    chunks,
    rechunk,
    retry_after_s,
    unreachable,
)
from taskforge_client.errors import InvalidRequest, WaitTimeout, error_of
from taskforge_client.models import (
    Backoff,
    CancelResult,
    DeadLetterPage,
    KeyCreated,
    KeyInfo,
    NewTask,
    QueueStats,
    Task,
    TaskCreated,
)

T = TypeVar("T")


class AsyncTaskForge:
    """A TaskForge gateway, spoken to with asyncio.

    ``url`` and ``api_key`` default to ``TASKFORGE_URL`` (else ``http://127.0.0.1:8080``) and
    ``TASKFORGE_API_KEY``. 429s (and 502-504s of calls safe to repeat) are retried up to
    ``retry.max_retries`` times, after ``Retry-After`` when the server sends it.
    Pass ``http_client`` to reuse or instrument an ``httpx.AsyncClient``
    (:meth:`aclose` then leaves it open).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = Config.resolve(url, api_key)
        self.retry = retry or RetryPolicy()
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._owns_http = http_client is None
        self.dlq = AsyncDeadLetters(self)
        self.keys = AsyncKeys(self)

    async def aclose(self) -> None:
        """Close the connections (unless the ``httpx.AsyncClient`` was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncTaskForge:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def send(self, call: Call[T]) -> T:
        """Send ``call``, retrying as :class:`RetryPolicy` allows; raise the error otherwise."""
        attempt = 0
        while True:
            try:
                response = await self._http.send(call.request(self._http, self.config))
            except httpx.TransportError as error:
                delay = self.retry.after_error(error, attempt, call.idempotent)
                if delay is None:
                    raise unreachable(error, self.config) from None
            else:
                if response.is_success:
                    return call.read(response)
                delay = self.retry.after_response(response, attempt, call.idempotent)
                if delay is None:
                    raise error_of(response, retry_after_s(response))
            attempt += 1
            await asyncio.sleep(delay)

    async def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        delay_s: float | None = None,
        eta: datetime | None = None,
        max_retries: int | None = None,
        backoff: Backoff | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> TaskCreated:
        """Enqueue one task. Without ``idempotency_key`` a fresh one is used for this call."""
        task = NewTask(
            type=type, payload={} if payload is None else payload, queue=queue, delay_s=delay_s,
            eta=eta, max_retries=max_retries, backoff=backoff, timeout_s=timeout_s,
            idempotency_key=idempotency_key,
        )  # fmt: skip
        return await self.send(_ops.enqueue(task))

    async def enqueue_many(
        self, tasks: Iterable[NewTask | Mapping[str, Any]], *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> list[TaskCreated]:
        """Enqueue many tasks through the batch route, ``chunk_size`` per request.

        A server whose batch limit is lower refuses the first chunk; the rest is then sent in
        chunks of its limit. Each task gets an idempotency key unless it has one, so a chunk
        resent after a lost answer creates nothing twice.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        pending, created = batch_items(tasks), []
        while pending:
            chunk = next(chunks(pending, chunk_size))
            try:
                created.extend((await self.send(_ops.enqueue_batch(chunk))).tasks)
            except InvalidRequest as error:
                smaller = rechunk(error.problem.detail, chunk_size)
                if smaller is None:
                    raise
                chunk_size = smaller
                continue
            pending = pending[len(chunk) :]
        return created

    async def get(self, task_id: str) -> Task:
        """A task's state, attempts, times, error, result and event log."""
        return await self.send(_ops.get(task_id))

    async def wait(
        self,
        task_id: str,
        *,
        timeout_s: float = 300.0,
        poll_s: float = 0.1,
        max_poll_s: float = 2.0,
        on_poll: Callable[[Task], None] | None = None,
    ) -> Task:
        """Poll until the task is succeeded, dead or cancelled; return it.

        ``on_poll`` sees the task after each look (a progress display, say).

        Raises:
            WaitTimeout: still not finished after ``timeout_s`` s (``.task``: the last look).
        """
        poll = Poll(timeout_s, poll_s, max_poll_s, time.monotonic())
        while True:
            task = await self.get(task_id)
            if on_poll is not None:
                on_poll(task)
            if task.state.terminal:
                return task
            delay = poll.next_delay(time.monotonic())
            if delay is None:
                raise WaitTimeout(f"task {task_id} still {task.state} after {timeout_s:g} s", task)
            await asyncio.sleep(delay)

    async def cancel(self, task_id: str) -> CancelResult:
        """Cancel a waiting task, or ask its worker to stop a running one."""
        return await self.send(_ops.cancel(task_id))

    async def queues(self) -> list[QueueStats]:
        """Every live queue with its depths and counters (all pages)."""
        out: list[QueueStats] = []
        cursor: str | None = None
        while True:
            page = await self.send(_ops.queues(cursor, 1000))
            out.extend(page.queues)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    async def queue(self, name: str) -> QueueStats:
        """One queue's depths and counters."""
        return await self.send(_ops.queue(name))


class AsyncDeadLetters:
    """``client.dlq``: dead tasks (admin scope)."""

    def __init__(self, client: AsyncTaskForge) -> None:
        self._client = client

    async def list(
        self,
        queue: str | None = None,
        *,
        task_type: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> DeadLetterPage:
        """One page of dead tasks, oldest death first."""
        return await self._client.send(
            _ops.dlq_list(queue=queue, task_type=task_type, reason=reason, since=since,
                          until=until, cursor=cursor, limit=limit)
        )  # fmt: skip

    async def requeue(
        self, task_id: str | None = None, *, queue: str | None = None, all: bool = False,
        limit: int | None = None,
    ) -> int:  # fmt: skip
        """Requeue one dead task, or up to ``limit`` of ``queue`` (every queue: ``all``)."""
        call = _ops.dlq_requeue(task_id, queue=queue, everything=all, limit=limit)
        return (await self._client.send(call)).count

    async def purge(self, queue: str | None = None, *, all: bool = False) -> int:
        """Delete the dead tasks of ``queue`` (or of every queue with ``all``); how many."""
        return (await self._client.send(_ops.dlq_purge(queue=queue, everything=all))).count


class AsyncKeys:
    """``client.keys``: API keys (admin scope)."""

    def __init__(self, client: AsyncTaskForge) -> None:
        self._client = client

    async def create(
        self, name: str, scopes: Sequence[str], *, rate_per_s: float | None = None,
        burst: int | None = None,
    ) -> KeyCreated:  # fmt: skip
        """A new key; its secret (``.key``) is shown this once."""
        return await self._client.send(_ops.keys_create(name, scopes, rate_per_s, burst))

    async def list(self) -> list[KeyInfo]:
        """Every key, oldest first, without secrets."""
        return (await self._client.send(_ops.keys_list())).items

    async def revoke(self, key_id: str) -> None:
        """Revoke a key; it is refused by every gateway replica within seconds."""
        await self._client.send(_ops.keys_revoke(key_id))
