"""Ports for test servers: free ones (the local stack's helper), and who listens where.

The listening-socket helpers read Linux's ``/proc`` (no psutil in the environment): the
sockets a process holds are the ``socket:[inode]`` links under ``/proc/<pid>/fd``, and
``/proc/net/tcp`` and ``/proc/net/tcp6`` give each socket inode's address and state.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack import free_port

__all__ = ["Listener", "children_of", "free_port", "listeners", "port_is_free"]

#: ``st`` column of /proc/net/tcp for a listening socket.
TCP_LISTEN = "0A"
PROC = Path("/proc")


@dataclass(frozen=True, slots=True, order=True)
class Listener:
    """One listening TCP socket of a process."""

    pid: int
    host: str
    port: int


def _address(hex_address: str, family: socket.AddressFamily) -> tuple[str, int]:
    # The kernel prints each 32-bit word of the address in host byte order.
    hex_host, hex_port = hex_address.split(":")
    words = [int(hex_host[i : i + 8], 16) for i in range(0, len(hex_host), 8)]
    packed = b"".join(struct.pack("=I", word) for word in words)
    return socket.inet_ntop(family, packed), int(hex_port, 16)


def _listening_inodes() -> dict[int, tuple[str, int]]:
    """Socket inode -> (host, port) of every listening TCP socket of this network namespace."""
    found: dict[int, tuple[str, int]] = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        table = PROC / "net" / name
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == TCP_LISTEN:
                found[int(fields[9])] = _address(fields[1], family)
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        links = list((PROC / str(pid) / "fd").iterdir())
    except OSError:  # gone, or not ours to read
        return inodes
    for link in links:
        try:
            target = str(link.readlink())
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def listeners(pids: Iterable[int]) -> list[Listener]:
    """Every listening TCP socket held by one of ``pids`` (Linux only)."""
    table = _listening_inodes()
    return sorted(
        Listener(pid, *table[inode])
        for pid in pids
        for inode in _socket_inodes(pid)
        if inode in table
    )


def children_of(parent: int) -> dict[int, str]:
    """Live (not zombie) child processes of ``parent``: pid -> command line."""
    found: dict[int, str] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == parent and state != "Z":
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``port`` of this namespace and ``host`` can bind it."""
    if any(p == port for _, p in _listening_inodes().values()):
        return False
    with socket.socket() as sock:
        # As servers do: a connection of the past in TIME_WAIT does not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
