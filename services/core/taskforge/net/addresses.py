"""Which network destinations handler calls may reach: address classes and the allow-list.

By default a handler's HTTP call may connect only to globally routable unicast addresses.
Refused, with the class named in the error:

============================  ==================================================================
class                         ranges
============================  ==================================================================
cloud metadata                169.254.169.254, 169.254.170.2, 169.254.170.23, 100.100.100.200,
                              192.0.0.192, fd00:ec2::254, fd00:ec2::23, fd20:ce::254
unspecified                   0.0.0.0/8 (Linux connects 0.0.0.0 to the local host), ::/128
loopback                      127.0.0.0/8, ::1
private                       10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 64:ff9b:1::/48
                              (local-use NAT64)
shared address space (CGNAT)  100.64.0.0/10 (also used for pod and node networks)
link-local                    169.254.0.0/16, fe80::/10
unique-local                  fc00::/7 (and the deprecated site-local fec0::/10)
multicast                     224.0.0.0/4, ff00::/8
reserved                      192.0.0.0/24, 192.0.2.0/24, 198.18.0.0/15, 198.51.100.0/24,
                              203.0.113.0/24, 240.0.0.0/4 (with 255.255.255.255), ::/96
                              (IPv4-compatible), 100::/64, 2001:db8::/32, and whatever else
                              Python does not call global (such as Teredo, 2001::/32)
============================  ==================================================================

IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
(``::ffff:127.0.0.1``), NAT64 (``64:ff9b::/96``) and 6to4 (``2002::/16``).

An operator opens exceptions with ``TASKFORGE_HTTP_ALLOW_CIDRS`` (networks) and
``TASKFORGE_HTTP_ALLOW_HOSTS`` (names as written in the URL, or ``*.suffix`` for every name
under a suffix). A metadata address stays refused unless a CIDR names exactly that address
(``/32`` or ``/128``): a broad exception such as ``100.64.0.0/10`` for a pod network must not
hand out the node's cloud credentials, and neither may a DNS name an attacker can repoint.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CIDRS_VARIABLE = "TASKFORGE_HTTP_ALLOW_CIDRS"
HOSTS_VARIABLE = "TASKFORGE_HTTP_ALLOW_HOSTS"

#: Instance metadata services: AWS (IMDS, ECS task roles, EKS pod identity; IPv4 and IPv6),
#: GCP, Azure, OpenStack and DigitalOcean (169.254.169.254), GCP IPv6, Alibaba, Oracle (legacy).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "fd20:ce::254",
    )
)

# First match wins: ::/128 and ::1/128 come before the ::/96 that holds them.
_CLASSES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), name)
    for net, name in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/4", "multicast"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved"),
        ("198.18.0.0/15", "reserved"),
        ("198.51.100.0/24", "reserved"),
        ("203.0.113.0/24", "reserved"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved"),  # IPv4-compatible addresses, deprecated
        ("64:ff9b:1::/48", "private"),  # local-use NAT64: translates into the site's network
        ("fc00::/7", "unique-local"),
        ("fec0::/10", "unique-local"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
        ("100::/64", "reserved"),
        ("2001:db8::/32", "reserved"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# IPv4-translated addresses (RFC 2765 stateless translation), which Python counts as global.
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")

# A host whose last label is a number (2130706433, 0x7f.1, 127.1) is an IPv4 address in one of
# the forms inet_aton reads, not a name (the WHATWG URL standard draws the same line).
_NUMERIC_HOST_RE = re.compile(r"(.*\.)?([0-9]+|0x[0-9a-f]*)", re.IGNORECASE)
# Lower-case ASCII labels (IDNA names in their xn-- form), optionally "*." in front.
_HOST_PATTERN_RE = re.compile(r"(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_-]+")


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, translated, NAT64, 6to4), else ``ip``."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip


def address_class(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused by default (``"loopback"``, ``"cloud metadata"``...), or None."""
    judged = embedded_ipv4(ip)
    if judged in METADATA_ADDRESSES or ip in METADATA_ADDRESSES:
        return "cloud metadata"
    for network, name in _CLASSES:
        if judged.version == network.version and judged in network:
            return name
    return None if judged.is_global else "reserved"


def normalise_host(host: str) -> str:
    """``host`` as compared with the allow-list: lower case, without a trailing dot."""
    return host.lower().rstrip(".")


def is_address_literal(host: str) -> bool:
    """Whether ``host`` writes an address (``::1``, ``127.0.0.1``, ``2130706433``), not a name."""
    host = normalise_host(host).strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_NUMERIC_HOST_RE.fullmatch(host))
    return True


def parse_allow_cidrs(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks of ``TASKFORGE_HTTP_ALLOW_CIDRS``; a bare address means just that address.

    Raises:
        ValueError: an item is not a network; the message names it.
    """
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=True))
        except ValueError as exc:
            raise ValueError(
                f"{item!r} is not a network such as 10.0.0.0/8 or fd00::/8 ({exc})"
            ) from None
    return tuple(networks)


def parse_allow_hosts(items: Iterable[str]) -> tuple[str, ...]:
    """Names of ``TASKFORGE_HTTP_ALLOW_HOSTS``, normalised.

    Raises:
        ValueError: an item is an address (those go in the CIDR list) or not a host name.
    """
    hosts = []
    for item in items:
        host = normalise_host(item.strip())
        if is_address_literal(host):
            raise ValueError(
                f"{HOSTS_VARIABLE}: {item!r} is an address; list it in {CIDRS_VARIABLE}"
            )
        if len(host) > 253 or not _HOST_PATTERN_RE.fullmatch(host):
            raise ValueError(
                f"{item!r} is not a host name such as hooks.internal or "
                "*.svc.cluster.local (international names in their xn-- form)"
            )
        hosts.append(host)
    return tuple(hosts)


def _same_address(host: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) == ip
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """The default refusals plus the operator's exceptions (see the module docstring)."""

    allow_cidrs: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for start-up logs: what handler HTTP calls may reach."""
        cidrs = ",".join(str(n) for n in self.allow_cidrs) or "none"
        hosts = ",".join(self.allow_hosts) or "none"
        return f"public addresses, plus allowed CIDRs {cidrs} and hosts {hosts}"

    def host_allowed(self, host: str) -> bool:
        """Whether the name ``host`` is on the allow-list, exactly or under a ``*.`` suffix."""
        if is_address_literal(host):
            return False
        name = normalise_host(host)
        for pattern in self.allow_hosts:
            if pattern.startswith("*."):
                if name.endswith(pattern[1:]):
                    return True
            elif name == pattern:
                return True
        return False

    def _cidr_allows(self, ip: IPAddress, *, exact: bool) -> bool:
        return any(
            ip.version == net.version and ip in net and (not exact or net.num_addresses == 1)
            for net in self.allow_cidrs
        )

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why connecting to ``ip`` (resolved from ``host``) is refused, or None if allowed."""
        reason = address_class(ip)
        if reason is None:
            return None
        judged = embedded_ipv4(ip)
        candidates = {ip, judged}
        shown = host if _same_address(host, ip) else f"{host} ({ip})"
        if reason == "cloud metadata":
            if any(self._cidr_allows(a, exact=True) for a in candidates):
                return None
            return (
                f"destination {shown} is not allowed (cloud metadata); only "
                f"{CIDRS_VARIABLE}={judged}/{judged.max_prefixlen} allows it"
            )
        if self.host_allowed(host) or any(self._cidr_allows(a, exact=False) for a in candidates):
            return None
        how = (
            CIDRS_VARIABLE if is_address_literal(host) else f"{HOSTS_VARIABLE} or {CIDRS_VARIABLE}"
        )
        return f"destination {shown} is not allowed ({reason}); allow it with {how}"
