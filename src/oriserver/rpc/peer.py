"""Turns a gRPC peer string into the caller's IP address."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote


def client_ip(peer: str) -> str | None:
    """'ipv4:10.0.0.7:5123' -> '10.0.0.7', 'ipv6:[::1]:5123' -> '::1', other transports -> None."""
    transport, _, address = unquote(peer).partition(":")
    if transport == "ipv4":
        host = address.rpartition(":")[0]
    elif transport == "ipv6":
        host = address.rpartition(":")[0].strip("[]")
    else:
        return None
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None
