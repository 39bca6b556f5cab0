"""Which callers are watched, and the notification a watched request produces."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from oriserver.domain.events import CalculationRequested, Event

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class WatchList:
    """A set of networks; a single address is a /32 or /128 network."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> WatchList:
        """Parse a comma-separated list of IPs or CIDRs; raise ValueError naming the bad entry."""
        networks: list[Network] = []
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return cls(tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def matches(self, ip: str | None) -> Network | None:
        """The first watched network containing ip, or None."""
        if not ip:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network in self.networks:
            if address.version == network.version and address in network:
                return network
        return None


@dataclass(frozen=True, slots=True)
class WatchedRequest:
    """A notification: a watched address asked for a calculation."""

    event: CalculationRequested
    network: Network

    def as_payload(self) -> dict[str, object]:
        """The JSON body sent to the webhook (and logged)."""
        inputs = {
            k: v
            for k, v in (
                ("first", self.event.inputs.first),
                ("last", self.event.inputs.last),
                ("base", self.event.inputs.base),
            )
            if v is not None
        }
        return {
            "kind": "watched_ip_request",
            "event_id": str(self.event.event_id),
            "calculation_id": str(self.event.calculation_id),
            "client_ip": self.event.client_ip,
            "watched_network": str(self.network),
            "method": self.event.method.value,
            "inputs": inputs,
            "occurred_at": self.event.occurred_at.isoformat(),
            "instance_id": self.event.instance_id,
        }


def decide(watchlist: WatchList, event: Event) -> WatchedRequest | None:
    """The reactor's decision: notify for each request from a watched address."""
    if not isinstance(event, CalculationRequested):
        return None
    network = watchlist.matches(event.client_ip)
    return WatchedRequest(event, network) if network is not None else None
