"""The egress guard of handler HTTP calls: address classes, allow-lists, rebinding, redirects.

Requests go over real sockets to real local servers; names resolve through the system
resolver (numeric forms and ``localhost``). Only the DNS-rebinding and wildcard tests answer
names through :class:`ScriptedResolver`, a stand-in for DNS driven through the client's
resolver seam: this machine has no DNS server the tests could control.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from taskforge.handlers.http import WebhookRetryableError, http
from taskforge.net.addresses import EgressPolicy, IPAddress, address_class
from taskforge.net.egress import DestinationRefused, GuardedClient, handler_client
from taskforge.retry import GiveUp
from tests.support.http_sink import HttpSink
from tests.unit.taskforge.handlers.conftest import handler_settings
from tests.unit.taskforge.handlers.test_http import make_ctx


class ScriptedResolver:
    """Answers names from a script, one answer per call (the last one repeats)."""

    def __init__(self, *answers: Sequence[str] | OSError) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, OSError):
            raise answer
        return [ipaddress.ip_address(a) for a in answer]


@asynccontextmanager
async def guarded(**settings: Any) -> AsyncIterator[GuardedClient]:
    """A handler client for ``settings`` (by default nothing allowed beyond public addresses)."""
    resolve = settings.pop("resolve", None)
    settings.setdefault("http_allow_cidrs", ())
    async with handler_client(handler_settings(**settings), resolve=resolve) as client:
        yield client


@asynccontextmanager
async def sinks_on_one_port(*hosts: str) -> AsyncIterator[list[HttpSink]]:
    """Sinks on several loopback addresses sharing one port, so one URL can reach any."""
    for _ in range(20):
        first = await HttpSink(host=hosts[0]).start()
        started = [first]
        try:
            for host in hosts[1:]:
                started.append(await HttpSink(host=host, port=first.port).start())
        except OSError:  # the port is taken on another address: try another port
            for sink in started:
                await sink.close()
            continue
        try:
            yield started
        finally:
            for sink in started:
                await sink.close()
        return
    raise AssertionError("no port free on every address")


# -- address classes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("100.127.255.254", "shared address space (CGNAT)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "unique-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "reserved"),
        ("192.0.2.10", "reserved"),
        ("198.18.0.1", "reserved"),
        ("198.51.100.7", "reserved"),
        ("203.0.113.9", "reserved"),
        ("2001:db8::1", "reserved"),
        ("100::1", "reserved"),
        ("::7f00:1", "reserved"),
        ("2001::1", "reserved"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("fd20:ce::254", "cloud metadata"),
        # IPv6 forms carrying an IPv4 address are judged by that address.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("2002:c0a8:0101::1", "private"),
        ("64:ff9b:1::a00:1", "private"),
        ("::ffff:0:7f00:1", "loopback"),  # IPv4-translated (RFC 2765)
        ("::ffff:0:a9fe:a9fe", "cloud metadata"),
        # Publicly routable: allowed.
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("100.128.0.1", None),
        ("172.32.0.1", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_classes(address: str, expected: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == expected


def test_metadata_needs_its_exact_address_in_the_allow_list() -> None:
    metadata = ipaddress.ip_address("169.254.169.254")
    broad = EgressPolicy(allow_cidrs=(ipaddress.ip_network("169.254.0.0/16"),))
    by_name = EgressPolicy(allow_hosts=("metadata.google.internal",))
    exact = EgressPolicy(allow_cidrs=(ipaddress.ip_network("169.254.169.254/32"),))

    assert broad.refusal("169.254.1.1", ipaddress.ip_address("169.254.1.1")) is None
    assert "cloud metadata" in (broad.refusal("169.254.169.254", metadata) or "")
    assert "cloud metadata" in (by_name.refusal("metadata.google.internal", metadata) or "")
    assert exact.refusal("169.254.169.254", metadata) is None


def test_policy_description_names_the_exceptions() -> None:
    policy = EgressPolicy((ipaddress.ip_network("10.0.0.0/8"),), ("hooks.internal",))

    assert EgressPolicy().describe() == ("public addresses, plus allowed CIDRs none and hosts none")
    assert policy.describe() == (
        "public addresses, plus allowed CIDRs 10.0.0.0/8 and hosts hooks.internal"
    )


def test_allowed_host_names_match_exactly_or_below_a_wildcard() -> None:
    policy = EgressPolicy(allow_hosts=("hooks.internal", "*.svc.cluster.local"))

    assert policy.host_allowed("hooks.internal")
    assert policy.host_allowed("HOOKS.internal.")
    assert policy.host_allowed("api.billing.svc.cluster.local")
    assert not policy.host_allowed("svc.cluster.local")
    assert not policy.host_allowed("evilsvc.cluster.local")
    assert not policy.host_allowed("hooks.internal.evil.example")


# -- refusals through real resolution, nothing sent ------------------------------------------


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "destination 127.0.0.1 is not allowed (loopback); allow it with "),
        ("localhost", "destination localhost (127.0.0.1) is not allowed (loopback)"),
        ("2130706433", "destination 2130706433 (127.0.0.1) is not allowed (loopback)"),
        ("0x7f.1", "destination 0x7f.1 (127.0.0.1) is not allowed (loopback)"),
        ("017700000001", "(127.0.0.1) is not allowed (loopback)"),
        ("127.1", "destination 127.1 (127.0.0.1) is not allowed (loopback)"),
        ("0", "destination 0 (0.0.0.0) is not allowed (unspecified)"),
        ("[::1]", "destination ::1 is not allowed (loopback)"),
        ("[::ffff:127.0.0.1]", "destination ::ffff:127.0.0.1 is not allowed (loopback)"),
        ("[64:ff9b::7f00:1]", "is not allowed (loopback)"),
    ],
)
async def test_loopback_in_any_spelling_is_refused_before_connecting(
    sink: HttpSink, host: str, message: str
) -> None:
    async with guarded() as client:
        with pytest.raises(DestinationRefused, match=re.escape(message)):
            await http({"url": f"http://{host}:{sink.port}/hook"}, make_ctx(client))

    assert sink.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is not allowed (cloud metadata); only "
            "TASKFORGE_HTTP_ALLOW_CIDRS=169.254.169.254/32 allows it",
        ),
        ("http://[fd00:ec2::254]/latest/", "fd00:ec2::254 is not allowed (cloud metadata)"),
        ("http://100.100.100.200/latest/", "100.100.100.200 is not allowed (cloud metadata)"),
        ("http://10.0.0.1/", "10.0.0.1 is not allowed (private)"),
        ("http://172.16.5.4:8080/", "172.16.5.4 is not allowed (private)"),
        ("https://192.168.0.1/", "192.168.0.1 is not allowed (private)"),
        ("http://100.64.0.1/", "100.64.0.1 is not allowed (shared address space (CGNAT))"),
        ("http://169.254.10.10/", "169.254.10.10 is not allowed (link-local)"),
        ("http://[fe80::1]/", "fe80::1 is not allowed (link-local)"),
        ("http://[fd00::1]/", "fd00::1 is not allowed (unique-local)"),
        ("http://224.0.0.1/", "224.0.0.1 is not allowed (multicast)"),
        ("http://[ff02::1]/", "ff02::1 is not allowed (multicast)"),
        ("http://240.0.0.1/", "240.0.0.1 is not allowed (reserved)"),
        ("http://0.0.0.0:9100/metrics", "0.0.0.0 is not allowed (unspecified)"),
    ],
)
async def test_other_refused_classes(url: str, message: str) -> None:
    async with guarded() as client:
        with pytest.raises(GiveUp) as caught:
            await http({"url": url}, make_ctx(client))

    assert isinstance(caught.value, DestinationRefused)
    assert message in str(caught.value)


async def test_a_name_with_any_refused_address_is_refused(sink: HttpSink) -> None:
    resolver = ScriptedResolver(["93.184.215.14", "127.0.0.1"])

    async with guarded(resolve=resolver) as client:
        with pytest.raises(DestinationRefused, match=r"mixed.test \(127.0.0.1\) .*loopback"):
            await http({"url": f"http://mixed.test:{sink.port}/"}, make_ctx(client))

    assert sink.requests == []


async def test_the_http_handler_refuses_a_client_without_the_guard(sink: HttpSink) -> None:
    async with httpx.AsyncClient(trust_env=False) as plain:
        with pytest.raises(GiveUp, match="no egress guard"):
            await http({"url": sink.url}, make_ctx(plain))

    assert sink.requests == []


# -- allow-lists -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1"])
async def test_an_allowed_cidr_opens_its_addresses_in_any_spelling(
    sink: HttpSink, host: str
) -> None:
    async with guarded(http_allow_cidrs="127.0.0.0/8") as client:
        result = await http({"url": f"http://{host}:{sink.port}/hook"}, make_ctx(client))

    assert result == {"status": 200}
    assert [r.path for r in sink.requests] == ["/hook"]


async def test_an_allowed_cidr_opens_nothing_else(sink: HttpSink) -> None:
    async with guarded(http_allow_cidrs="127.0.0.2/32") as client:
        with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1 is not allowed"):
            await http({"url": sink.url}, make_ctx(client))

    assert sink.requests == []


async def test_an_allowed_host_name_is_reached(sink: HttpSink) -> None:
    async with guarded(http_allow_hosts="localhost") as client:
        result = await http({"url": f"http://localhost:{sink.port}/"}, make_ctx(client))

    assert result == {"status": 200}
    assert len(sink.requests) == 1
    assert sink.requests[0].headers["host"] == f"localhost:{sink.port}"


async def test_a_wildcard_host_allows_names_below_it_only(sink: HttpSink) -> None:
    resolver = ScriptedResolver(["127.0.0.1"])

    async with guarded(http_allow_hosts="*.hooks.test", resolve=resolver) as client:
        await http({"url": f"http://a.hooks.test:{sink.port}/"}, make_ctx(client))
        with pytest.raises(DestinationRefused, match=r"destination hooks\.test \(127\.0\.0\.1\)"):
            await http({"url": f"http://hooks.test:{sink.port}/"}, make_ctx(client))

    assert len(sink.requests) == 1


# -- DNS rebinding and redirects -------------------------------------------------------------


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    # A name whose DNS answer changes from an allowed address to 127.0.0.1 (DNS rebinding):
    # each connection resolves once, and dials what it checked.
    resolver = ScriptedResolver(["127.0.0.2"], ["127.0.0.1"])
    async with sinks_on_one_port("127.0.0.2", "127.0.0.1") as (allowed, loopback):
        url = f"http://rebind.test:{allowed.port}/hook"
        async with guarded(http_allow_cidrs="127.0.0.2/32", resolve=resolver) as client:
            assert await http({"url": url}, make_ctx(client)) == {"status": 200}
            # The sink closes every connection, so the next request connects anew.
            with pytest.raises(DestinationRefused, match=r"rebind.test \(127.0.0.1\)"):
                await http({"url": url}, make_ctx(client))

        assert len(allowed.requests) == 1
        assert loopback.requests == []
    assert resolver.calls == ["rebind.test", "rebind.test"]


async def test_a_followed_redirect_to_a_refused_address_is_refused() -> None:
    async with sinks_on_one_port("127.0.0.1", "127.0.0.2") as (allowed, refused):
        allowed.respond(302, headers={"Location": f"http://127.0.0.2:{refused.port}/admin"})
        async with guarded(http_allow_cidrs="127.0.0.1/32") as client:
            with pytest.raises(DestinationRefused, match=r"127\.0\.0\.2 is not allowed"):
                await client.get(f"{allowed.url}/start", follow_redirects=True)

        assert [r.path for r in allowed.requests] == ["/start"]
        assert refused.requests == []


async def test_the_http_handler_does_not_follow_a_redirect_to_a_refused_address() -> None:
    async with sinks_on_one_port("127.0.0.1", "127.0.0.2") as (allowed, refused):
        allowed.respond(307, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
        async with guarded(http_allow_cidrs="127.0.0.1/32") as client:
            with pytest.raises(GiveUp, match="redirects are not followed"):
                await http({"url": allowed.url}, make_ctx(client))

        assert len(allowed.requests) == 1
        assert refused.requests == []


# -- failures that are not refusals ----------------------------------------------------------


async def test_a_name_that_does_not_resolve_is_retryable() -> None:
    resolver = ScriptedResolver(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))

    async with guarded(resolve=resolver) as client:
        with pytest.raises(WebhookRetryableError, match=r"cannot resolve nowhere\.test"):
            await http({"url": "http://nowhere.test/"}, make_ctx(client))


async def test_resolution_counts_against_the_connect_timeout() -> None:
    async def never(host: str, port: int) -> list[IPAddress]:
        await asyncio.sleep(60)
        return []

    async with guarded(resolve=never) as client:
        with pytest.raises(WebhookRetryableError, match="ConnectTimeout"):
            await http({"url": "http://slow.test/", "timeout_s": 0.2}, make_ctx(client))
