"""The HTTP client handlers get: every connection it opens is checked against the egress policy.

The check sits in the client's network backend, where httpcore opens TCP connections, so it
covers every request the client sends: each redirect hop if a caller follows redirects, each
retry, each new pooled connection. The backend resolves the name itself, refuses the whole
connection if any resolved address is refused (see :mod:`taskforge.net.addresses`), and then
connects to the addresses it checked, never to the name: a DNS answer that changes between a
check and the connection (DNS rebinding) cannot slip a private address past. TLS still
verifies the certificate against the name in the URL (httpcore passes it as the SNI name).

Proxy variables (``HTTP_PROXY``...) are not used by this client: through a proxy the
connection would be checked against the proxy's address, not the destination's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence

import httpcore
import httpx

from taskforge.net.addresses import EgressPolicy, IPAddress
from taskforge.retry import GiveUp
from taskforge.settings.handlers import HandlerSettings

#: ``resolve(host, port)``: the addresses to try, in order. A seam for tests of DNS rebinding;
#: services use :func:`system_resolve`.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

#: httpx's own pool limits, kept: the client used to be a plain ``httpx.AsyncClient``.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class DestinationRefused(GiveUp):
    """A handler's HTTP call would reach an address the egress policy refuses.

    A :class:`~taskforge.retry.GiveUp`: the same destination is refused on every attempt, so
    the task goes to the dead-letter queue at once, with this message as its error.
    """


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``getaddrinfo`` gives for ``host``, without duplicates, in its order.

    ``getaddrinfo`` also reads the numeric forms the C library accepts (``2130706433``,
    ``0x7f.1``, ``0``): they come back as the addresses they denote, and are judged as such.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the policy allows."""

    def __init__(
        self,
        policy: EgressPolicy,
        resolve: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self._resolve = resolve or system_resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, check every address, connect to the first that answers.

        Raises:
            DestinationRefused: an address ``host`` resolves to is refused.
            httpcore.ConnectError: the name does not resolve, or no address accepts.
            httpcore.ConnectTimeout: resolving and connecting took longer than ``timeout``.
        """
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._checked(host, port)
                return await self._connect_first(addresses, port, local_address, socket_options)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host} timed out") from None

    async def _checked(self, host: str, port: int) -> Sequence[IPAddress]:
        try:
            addresses = await self._resolve(host, port)
        except OSError as exc:  # socket.gaierror: unknown name, no answer
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        # All, not just the one connected to: a name that mixes a public address with
        # 127.0.0.1 is refused outright rather than half-trusted.
        for ip in addresses:
            refusal = self.policy.refusal(host, ip)
            if refusal is not None:
                raise DestinationRefused(refusal)
        return addresses

    async def _connect_first(
        self,
        addresses: Sequence[IPAddress],
        port: int,
        local_address: str | None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
    ) -> httpcore.AsyncNetworkStream:
        error: httpcore.ConnectError | None = None
        for ip in addresses:
            # A mapped address is dialled as the IPv4 address it is, which also works on
            # hosts without IPv6.
            target = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            try:
                return await self._inner.connect_tcp(
                    str(target or ip), port, None, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError("no address to connect to")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: a Unix socket bypasses every address check."""
        raise DestinationRefused("destination is a Unix socket, which handlers may not reach")

    async def sleep(self, seconds: float) -> None:
        """Delegated (httpcore sleeps between connection retries)."""
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's HTTP transport with its connection pool on a :class:`GuardedBackend`."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolve: Resolver | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        # httpx takes no network backend, so the pool it built is replaced by an equal one
        # that has ours; the request and exception mapping of the parent are kept.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolve),
        )


class GuardedClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` on a :class:`GuardedTransport`; the client handlers are given.

    The ``http`` handler refuses to send through any other client.
    """

    def __init__(
        self, policy: EgressPolicy, *, timeout: float, resolve: Resolver | None = None
    ) -> None:
        super().__init__(transport=GuardedTransport(policy, resolve=resolve), timeout=timeout)
        self.egress_policy = policy


def policy_from_settings(settings: HandlerSettings) -> EgressPolicy:
    """The egress policy ``TASKFORGE_HTTP_ALLOW_CIDRS`` and ``_HOSTS`` describe."""
    return EgressPolicy(tuple(settings.http_allow_cidrs), tuple(settings.http_allow_hosts))


def handler_client(settings: HandlerSettings, *, resolve: Resolver | None = None) -> GuardedClient:
    """The HTTP client for task handlers (the worker's, and the api's ``consume-once``)."""
    return GuardedClient(
        policy_from_settings(settings), timeout=settings.webhook_timeout_s, resolve=resolve
    )
