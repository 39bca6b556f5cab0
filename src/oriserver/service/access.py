"""The events API's access decision: from what a call shows (address, token, certificate
names) to allowed or refused, with the caller's identity for the audit line.

Pure: the rules come in as values (networks, tokens, names) and nothing is read
here, so the decision is tested without a server; rpc/access_guard.py takes the
credentials from the call and enforces the answer on both engines.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from oriserver.domain.watchlist import WatchList

GUIDE = "docs/security.md, who may read the log"


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"  # no credential, or not a bearer token
    DENIED = "denied"  # a credential or an address that is not allowed


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one call shows: grpc's peer string, its authorization header, its certificate's SANs."""

    peer: str
    authorization: str | None = None
    client_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    caller: str  # "loopback", "network:10.0.0.0/8", "token:1a2b3c4d", "cert:name", "anonymous"
    reason: str = ""  # for the refused caller: what was wrong and how access is granted

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED


def token_id(token: str) -> str:
    """A short name for a token in logs: the start of its SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


class TokenSet:
    """Accepted tokens, compared in constant time (every token is compared, always)."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._digests = tuple((hashlib.sha256(t.encode()).digest(), token_id(t)) for t in tokens)

    def __len__(self) -> int:
        return len(self._digests)

    def match(self, token: str) -> str | None:
        """The id of the accepted token equal to ``token``, or None."""
        given = hashlib.sha256(token.encode()).digest()
        found = None
        for digest, ident in self._digests:
            if hmac.compare_digest(given, digest):
                found = ident
        return found


def peer_address(peer: str) -> str | None:
    """The IP in a grpc peer string ('ipv4:10.0.0.7:5123', 'ipv6:%5B::1%5D:5123'), else None.
    An IPv4-mapped IPv6 address (the native engine on a dual-stack port) is the IPv4 one."""
    transport, _, rest = unquote(peer).partition(":")
    if transport not in ("ipv4", "ipv6"):
        return None
    try:
        ip = ipaddress.ip_address(rest.rpartition(":")[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _bearer(authorization: str) -> str | None:
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class AccessPolicy:
    """Network first (an address outside ``networks`` is refused whatever it shows); then,
    when tokens or client names are configured, a credential: a matching certificate
    name, or a bearer token from ``tokens()`` (read per call, so a rotated file counts)."""

    def __init__(
        self,
        networks: WatchList,
        tokens: Callable[[], TokenSet] | None = None,
        client_names: frozenset[str] = frozenset(),
    ) -> None:
        self._networks = networks
        self._tokens = tokens
        self._names = client_names

    @property
    def credentials_required(self) -> bool:
        return self._tokens is not None or bool(self._names)

    def decide(self, call: Credentials) -> Decision:
        address = peer_address(call.peer)
        network = self._networks.matches(address)
        if network is None:
            return Decision(
                Outcome.DENIED,
                "anonymous",
                f"the events API does not answer callers from {address or call.peer}: the "
                "operator allows networks in ORI_EVENTS_API_ALLOW_CIDRS (default: loopback "
                f"only) and may require tokens or client certificates ({GUIDE})",
            )
        if not self.credentials_required:
            by_network = (
                "loopback"
                if address and ipaddress.ip_address(address).is_loopback
                else f"network:{network}"
            )
            return Decision(Outcome.ALLOWED, by_network)
        for name in call.client_names:
            if name in self._names:
                return Decision(Outcome.ALLOWED, f"cert:{name}")
        return self._by_token(call)

    def _by_token(self, call: Credentials) -> Decision:
        how = self._how()
        token = _bearer(call.authorization) if call.authorization else None
        if token is None:
            if call.client_names and self._tokens is None:
                return Decision(
                    Outcome.DENIED,
                    "cert:" + ",".join(call.client_names),
                    f"this client certificate is not allowed to read the events API; {how}",
                )
            return Decision(Outcome.UNAUTHENTICATED, "anonymous", f"credentials required: {how}")
        ident = self._tokens().match(token) if self._tokens is not None else None
        if ident is None:
            return Decision(Outcome.DENIED, "unknown-token", f"the token is not accepted; {how}")
        return Decision(Outcome.ALLOWED, f"token:{ident}")

    def _how(self) -> str:
        ways = []
        if self._tokens is not None:
            ways.append("send 'authorization: Bearer <token>' (ori --token-file)")
        if self._names:
            ways.append("present a client certificate named in ORI_EVENTS_API_CLIENT_NAMES")
        return f"{' or '.join(ways)} ({GUIDE})"
