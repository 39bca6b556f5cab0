"""Turns a gRPC peer string into the caller's IP address."""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote

_CACHE: dict[str, str | None] = {}
_CACHE_LIMIT = 10_000  # peers are per connection; the cache is cleared when it grows past this


def client_ip(peer: str) -> str | None:
    """'ipv4:10.0.0.7:5123' -> '10.0.0.7', 'ipv6:[::1]:5123' -> '::1', other transports -> None."""
    try:
        return _CACHE[peer]
    except KeyError:
        pass
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    ip = _CACHE[peer] = _parse(peer)
    return ip


def _parse(peer: str) -> str | None:
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
