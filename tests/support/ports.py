"""Free TCP ports for test servers."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    The kernel picks the port (bind to port 0); the socket is closed before returning, so
    another process could take it in between. Callers that start a server on it should be
    ready to retry with a new port (``RedisServer`` does this when it chose the port itself).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
