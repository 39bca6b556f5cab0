"""Listen addresses: checked while the settings are parsed, not when a bind fails later.

An address is an IPv4 or IPv6 literal (an IPv6 one with or without brackets,
so ``[::]`` and ``::`` are the same) or a host name that resolves. Host names
are resolved once, here, at start-up: a name that does not resolve cannot be
bound either, and saying so names the variable instead of a grpc core error.
"""

from __future__ import annotations

import ipaddress
import re
import socket

# RFC 1123 labels; the last one may not be all digits (RFC 3696 section 2), which
# is what tells a mistyped address such as 256.1.1.1 from a host name.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    bracketed = text.startswith("[") and text.endswith("]")
    try:
        address = ipaddress.ip_address(text[1:-1] if bracketed else text)
    except ValueError:
        if bracketed or ":" in text or "[" in text:
            raise ValueError("is not a valid IPv6 address") from None
        return None
    if bracketed and address.version != 6:
        raise ValueError("is not a valid IPv6 address (only IPv6 goes in brackets)")
    return address


def _check_host_name(text: str) -> None:
    labels = text.removesuffix(".").split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("must be an IP address or a host name")
    if labels[-1].isdigit():
        raise ValueError("is not a valid IPv4 address")
    try:
        socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValueError("is a host name that does not resolve") from None


def listen_host(text: str, *, bracket_ipv6: bool) -> str:
    """The address in the form its server needs: gRPC wants ``[::1]``, sockets ``::1``."""
    address = _literal(text)
    if address is None:
        _check_host_name(text)
        return text
    if address.version == 6 and bracket_ipv6:
        return f"[{address.compressed}]"
    return address.compressed
