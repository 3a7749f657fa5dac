"""Free TCP ports for test servers: the local stack's helper, shared by every test."""

from __future__ import annotations

from scripts.devstack import free_port

__all__ = ["free_port"]
